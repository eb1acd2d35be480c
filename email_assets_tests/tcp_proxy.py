"""Loopback TCP proxies for the tests: one that cuts connections, one base for others."""

from __future__ import annotations

import contextlib
import socket
import threading


class LoopbackProxy:
    """Accepts on 127.0.0.1:port and connects each client to the target port; what flows
    between them is up to `_serve`. Bounded: stops with `close()`."""

    def __init__(self, target_port: int, port: int = 0) -> None:
        self.target_port = target_port
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(8)
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._serve(client, socket.create_connection(("127.0.0.1", self.target_port)))

    def _serve(self, client: socket.socket, server: socket.socket) -> None:
        raise NotImplementedError

    @staticmethod
    def _close_both(source: socket.socket, sink: socket.socket) -> None:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread
        self._listener.close()


class CuttingProxy(LoopbackProxy):
    """Each connection is cut once the server has sent `cut_after` bytes (None: never)."""

    def __init__(self, target_port: int, cut_after: int | None = None, port: int = 0) -> None:
        self.cut_after = cut_after
        super().__init__(target_port, port)

    def _serve(self, client: socket.socket, server: socket.socket) -> None:
        threading.Thread(target=self._pipe, args=(client, server, None), daemon=True).start()
        threading.Thread(target=self._pipe, args=(server, client, self.cut_after), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if limit is not None and sent + len(data) >= limit:
                    sink.sendall(data[: max(0, limit - sent)])
                    break
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            self._close_both(source, sink)
