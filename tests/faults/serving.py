"""A sync worker behind a loopback HTTP address, for tests whose tasks go through the
real Cloud Tasks emulator to `SyncWorker` without a whole local stack."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from functions.sync.worker import SyncWorker


def serve_worker(engine: Any) -> ThreadingHTTPServer:
    """Serve `SyncWorker` over `engine` (anything with the engine's `run(sub_id)`) on
    a free loopback port, on a daemon thread; the caller shuts the server down."""
    handler_worker = SyncWorker(lambda: engine)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            answer = handler_worker.handle(body)
            self.send_response(answer.status)
            self.end_headers()
            self.wfile.write(answer.reason.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
