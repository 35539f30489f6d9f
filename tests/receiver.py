"""A loopback HTTP server that records every request: a stand-in worker or webhook."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Answers `status` to every POST and keeps (time, lower-cased headers, body)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[float, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append(
                    (time.monotonic(), {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(
        self, count: int, timeout: float = 15
    ) -> list[tuple[float, dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.requests) < count:
            time.sleep(0.05)
        return self.requests

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
