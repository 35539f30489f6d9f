"""A loopback TCP proxy that can refuse connections on demand.

Put in front of the Cloud Tasks emulator (the functions' `CLOUD_TASKS_EMULATOR_HOST`
points at it), `refuse()` cuts every open connection and each new one, so
enqueues fail for real (gRPC UNAVAILABLE → QueueUnavailable), and `accept()`
forwards again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

HOST = "127.0.0.1"


class TcpProxy:
    """Forwards `HOST:port` to `upstream`; `refuse()` / `accept()` switch it off and on.

    While refusing it still accepts each connection and cuts it at once (gRPC sees
    UNAVAILABLE, as for a refused connection), so every refused connection is
    counted (`refused_connections`): the fault is shown to have acted, not only
    to have been switched on.
    """

    def __init__(self, upstream_port: int, port: int = 0, upstream_host: str = HOST) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._refusing = False
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self.port = port
        self.connections = 0
        self.refusals = 0
        self.refused_connections = 0

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def refusing(self) -> bool:
        return self._refusing or self._listener is None

    def start(self) -> TcpProxy:
        self._listen()
        return self

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def accept(self) -> None:
        """Forward again (listening again on the same port if stopped); idempotent."""
        with self._lock:
            self._refusing = False
        self._listen()

    def _listen(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            for attempt in range(50):
                try:
                    listener.bind((HOST, self.port))
                    break
                except OSError:
                    if attempt == 49:
                        listener.close()
                        raise
                    time.sleep(0.05)
            listener.listen(64)
            listener.settimeout(0.1)
            self.port = listener.getsockname()[1]
            self._listener = listener
            stop = threading.Event()
            self._closed = stop
            self._thread = threading.Thread(target=self._serve, args=(listener, stop),
                                            name="tcp-proxy-accept", daemon=True)
            self._thread.start()

    def refuse(self) -> None:
        """Cut every open connection, and each new one at once, until `accept()`."""
        with self._lock:
            if self._refusing or self._listener is None:
                return
            self._refusing = True
            conns, self._conns = self._conns, set()
        self.refusals += 1
        for conn in conns:
            _cut(conn)

    def stop(self) -> None:
        """Stop listening and cut everything."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
            self._closed.set()
            thread = self._thread
        if listener is None:
            return
        if thread is not None:
            thread.join(timeout=2)
        listener.close()
        for conn in conns:
            _cut(conn)

    def _serve(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                refusing = self._refusing
                if refusing:
                    self.refused_connections += 1
            if refusing:
                _cut(client)
                continue
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                _cut(client)
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                if stop.is_set() or self._refusing:
                    _cut(client)
                    _cut(upstream)
                    continue
                self._conns.update((client, upstream))
                self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), name="tcp-proxy-pipe",
                                 daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            _cut(src)
            _cut(dst)


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
