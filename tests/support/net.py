"""Sockets: free ports, waiting for a listener, and a guard that forbids non-loopback traffic."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator

from edge_ad.bench.mosquitto import free_port, wait_for_port

__all__ = ["NetworkBlocked", "block_network", "free_port", "wait_for_port"]


class NetworkBlocked(OSError):
    """Raised for any connection attempt to a non-loopback address."""


def _is_loopback(address: object) -> bool:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            return False
    return isinstance(address, (str, bytes))  # AF_UNIX paths


@contextlib.contextmanager
def block_network(attempts: list | None = None) -> Iterator[list]:
    """Make every connect() / DNS lookup of a non-loopback address fail (and record it)."""
    attempts = [] if attempts is None else attempts
    real_connect, real_connect_ex, real_getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def guard(address: object) -> None:
        if not _is_loopback(address):
            attempts.append(address)
            raise NetworkBlocked(f"network access to {address!r} blocked by test")

    def connect(self, address):
        guard(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        guard(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in (None, "localhost") and not _is_loopback((host,)):
            attempts.append(host)
            raise socket.gaierror(f"DNS lookup of {host!r} blocked by test")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
    try:
        yield attempts
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = (
            real_connect,
            real_connect_ex,
            real_getaddrinfo,
        )
