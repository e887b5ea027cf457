"""A plain HTTP file server on loopback, in a thread: where stations download bundle packages in tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["FileServer", "serve_files"]


@dataclass
class FileServer:
    """A running server: ``url`` is the served folder's address (ends in ``/``); ``requests`` the paths asked for."""

    folder: Path
    port: int
    requests: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def url_of(self, path: Path) -> str:
        """The URL of a file in the served folder."""
        return self.url + path.relative_to(self.folder).as_posix()


class _Handler(SimpleHTTPRequestHandler):
    server_info: FileServer
    send_length = True

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the test output stays readable

    def send_head(self):  # type: ignore[no-untyped-def]
        self.server_info.requests.append(self.path)
        return super().send_head()

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "content-length" and not self.send_length:
            return  # the body just ends when the connection closes (HTTP/1.0)
        super().send_header(keyword, value)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        pass  # a client that stops reading (a download cut short on purpose) is no test failure


@contextmanager
def serve_files(folder: Path, send_length: bool = True) -> Iterator[FileServer]:
    """Serve ``folder`` over HTTP on a free loopback port until the block ends.

    ``send_length=False`` leaves out Content-Length (a server that streams: the client must stop by itself).
    """
    info = FileServer(folder=folder, port=0)
    handler = type("Handler", (_Handler,), {"server_info": info, "send_length": send_length})
    server = _Server((info.host, 0), partial(handler, directory=str(folder)))
    info.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="file-server", daemon=True)
    thread.start()
    try:
        yield info
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
