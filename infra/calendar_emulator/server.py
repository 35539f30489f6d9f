"""The HTTP server: keep-alive HTTP/1.1 on the standard library, routing to the emulator."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol
from urllib.parse import parse_qs, unquote

from .errors import ApiError
from .http_types import Request, Response

log = logging.getLogger(__name__)


class Application(Protocol):
    """What the server needs from the emulator."""

    def handle(self, request: Request) -> Response: ...


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Small request/response pairs on keep-alive connections stall on Nagle otherwise.
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def _handle(self) -> None:
        raw_path, _, raw_query = self.path.partition("?")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            error = ApiError(400, "badRequest", "Invalid Content-Length header.")
            self._write(Response(400, error.to_bytes()))
            return
        body = self.rfile.read(length) if length > 0 else b""
        request = Request(
            method=self.command,
            segments=tuple(unquote(part) for part in raw_path.split("/") if part),
            query=parse_qs(raw_query, keep_blank_values=True),
            headers={key.lower(): value for key, value in self.headers.items()},
            body=body,
            base_url=self.server.base_url,
        )
        try:
            response = self.server.app.handle(request)
        except ApiError as err:
            response = Response(err.code, err.to_bytes())
        except Exception as err:  # never leak a traceback to the client
            log.exception("unhandled error for %s %s", self.command, self.path)
            response = Response(
                500,
                ApiError(500, "backendError", f"Backend Error: {type(err).__name__}").to_bytes(),
            )
        self._write(response)
        if response.after is not None:
            response.after()

    def _write(self, response: Response) -> None:
        head = [f"HTTP/1.1 {response.status} {self.responses.get(response.status, ('',))[0]}\r\n"]
        if response.content_type:
            head.append(f"Content-Type: {response.content_type}\r\n")
        head.extend(f"{name}: {value}\r\n" for name, value in response.headers)
        head.append(f"Content-Length: {len(response.body)}\r\n")
        head.append("Server: calendar-emulator\r\n")
        if self.close_connection:
            head.append("Connection: close\r\n")
        head.append("\r\n")
        self.wfile.write("".join(head).encode("latin-1") + response.body)
        self.wfile.flush()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one emulator application."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, app: Application) -> None:
        super().__init__((host, port), _Handler)
        self.app = app
        bound_host, bound_port = self.server_address[:2]
        if isinstance(bound_host, bytes):
            bound_host = bound_host.decode()
        self.base_url = f"http://{bound_host}:{bound_port}"

    def start_background(self) -> threading.Thread:
        """Serve in a daemon thread; stop with ``shutdown()`` then ``server_close()``."""
        thread = threading.Thread(
            target=self.serve_forever, args=(0.1,), name="calendar-emulator-http", daemon=True
        )
        thread.start()
        return thread
