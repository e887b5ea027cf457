"""A TCP proxy in front of the broker that can cut a client off (its network goes away, the broker stays up),
or make the broker look like an MQTT 3.1.1-only one (mosquitto 2 speaks 5 and cannot be told not to)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = ["CuttableProxy", "clean_session", "cuttable_proxy", "mqtt_level", "read_packet"]

REFUSED_PROTOCOL_LEVEL = b"\x20\x02\x00\x01"  # MQTT 3.1.1 CONNACK, return code 1: unacceptable protocol level


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def read_packet(sock: socket.socket) -> bytes:
    """One whole MQTT control packet (fixed header included)."""
    head = _read_exactly(sock, 1)
    length, shift, size = 0, 0, b""
    while True:
        byte = _read_exactly(sock, 1)
        size += byte
        length |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    return head + size + _read_exactly(sock, length)


def _level_at(connect: bytes) -> int:
    at = 1
    while connect[at] & 0x80:
        at += 1
    at += 1  # past the remaining length
    return at + 2 + int.from_bytes(connect[at : at + 2], "big")  # past the protocol name


def mqtt_level(connect: bytes) -> int:
    """The protocol level of a CONNECT packet (4 = 3.1.1, 5 = 5)."""
    return connect[_level_at(connect)]


def clean_session(connect: bytes) -> bool:
    """The Clean Session (3.1.1) / Clean Start (5) flag of a CONNECT packet."""
    return bool(connect[_level_at(connect) + 1] & 0x02)


@dataclass
class CuttableProxy:
    """Forwards 127.0.0.1:``port`` to the broker; :meth:`cut` drops every connection and refuses new ones.

    With ``mqtt311_only`` it answers an MQTT 5 CONNECT as a 3.1.1 broker must (CONNACK return code 1, then
    closes), counted in ``refused_mqtt5``, and forwards the rest; ``connects`` keeps every CONNECT packet.
    """

    target_port: int
    mqtt311_only: bool = False
    port: int = 0
    refused_mqtt5: int = 0
    connects: list[bytes] = field(default_factory=list)
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
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        first = b""
        if self.mqtt311_only:
            try:
                client.settimeout(10)
                first = read_packet(client)
                client.settimeout(None)
            except (OSError, ConnectionError):
                client.close()
                return
            with self._lock:
                self.connects.append(first)
            if mqtt_level(first) == 5:
                with contextlib.suppress(OSError):
                    client.sendall(REFUSED_PROTOCOL_LEVEL)
                with self._lock:
                    self.refused_mqtt5 += 1
                client.close()
                return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        with self._lock:
            self._sockets += [client, upstream]
        if first:
            upstream.sendall(first)
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
def cuttable_proxy(target_port: int, mqtt311_only: bool = False) -> Iterator[CuttableProxy]:
    """A running :class:`CuttableProxy` to ``target_port`` on 127.0.0.1."""
    proxy = CuttableProxy(target_port, mqtt311_only)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()
