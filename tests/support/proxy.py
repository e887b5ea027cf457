"""A TCP proxy in front of the broker that can cut a client off: its network goes away, the broker stays up."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = ["CuttableProxy", "cuttable_proxy"]


@dataclass
class CuttableProxy:
    """Forwards 127.0.0.1:``port`` to the broker; :meth:`cut` drops every connection and refuses new ones."""

    target_port: int
    port: int = 0
    _listener: socket.socket = field(default_factory=socket.socket)
    _open: threading.Event = field(default_factory=threading.Event)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _sockets: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._open.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            if not self._open.is_set():
                client.close()  # cut off: the station's reconnect fails at once
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every connection (both sides see it end without a DISCONNECT) and refuse new ones."""
        self._open.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        """Accept connections again."""
        self._open.set()

    def close(self) -> None:
        self._stopping.set()
        self.cut()
        self._listener.close()


@contextmanager
def cuttable_proxy(target_port: int) -> Iterator[CuttableProxy]:
    """A running :class:`CuttableProxy` to ``target_port`` on 127.0.0.1."""
    proxy = CuttableProxy(target_port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()
