"""A TCP proxy in front of the real Prefect server that can make it slow or overloaded.

`forward` pipes connections to the server; `hang` accepts them and never answers (a server
stuck on a lock, or a network that drops replies); `busy(n)` answers the next `n`
connections with the 503 Prefect's own server sends when SQLite says "database is locked".
The mode is chosen per connection, when it is accepted.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: application/json\r\n"
    b"content-length: 44\r\n"
    b"connection: close\r\n\r\n"
    b'{"exception_message":"Service Unavailable"}\n'
)


class PrefectProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.mode = "forward"
        self._busy_left = 0
        self.accepted = 0
        self.busy_answered = 0
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def busy(self, connections: int) -> None:
        with self._lock:
            self._busy_left = connections

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self.accepted += 1
                busy = self._busy_left > 0
                self._busy_left -= int(busy)
                mode = "busy" if busy else self.mode
                self._held.append(conn)
            if mode == "busy":
                threading.Thread(target=self._answer_busy, args=(conn,), daemon=True).start()
            elif mode == "forward":
                threading.Thread(target=self._forward, args=(conn,), daemon=True).start()
            # hang: keep the connection open, read nothing, answer nothing

    def _answer_busy(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            conn.sendall(BUSY_RESPONSE)
            with self._lock:
                self.busy_answered += 1
        with contextlib.suppress(OSError):
            conn.close()

    def _forward(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._held.append(upstream)

        def pump(src: socket.socket, dst: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while chunk := src.recv(65536):
                    dst.sendall(chunk)
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pump, args=(upstream, conn), daemon=True).start()
        pump(conn, upstream)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.listener.close()
        with self._lock:
            held, self._held = self._held, []
        for s in held:
            with contextlib.suppress(OSError):
                s.close()


@contextmanager
def prefect_proxy(upstream_port: int) -> Iterator[PrefectProxy]:
    proxy = PrefectProxy(upstream_port)
    try:
        yield proxy
    finally:
        proxy.close()
