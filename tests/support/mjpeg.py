"""A local MJPEG-over-HTTP "network camera" that can stop sending while keeping the connection open."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

__all__ = ["MjpegCamera", "serve_mjpeg"]


@dataclass
class MjpegCamera:
    """Controls of a running server: ``hang`` stops frames (connections stay open), ``resume`` restarts."""

    url: str
    frames: list[np.ndarray]
    fps: float = 20.0
    sending: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)
    served: int = 0

    def hang(self) -> None:
        self.sending.clear()

    def resume(self) -> None:
        self.sending.set()


def _handler(camera: MjpegCamera) -> type[BaseHTTPRequestHandler]:
    jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in camera.frames]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            i = 0
            try:
                while not camera.stopping.is_set():
                    if not camera.sending.wait(0.1):
                        continue  # hung: connection open, nothing sent
                    data = jpegs[i % len(jpegs)]
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                    self.wfile.write(f"Content-Length: {len(data)}\r\n\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                    camera.served += 1
                    i += 1
                    time.sleep(1 / camera.fps)
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


@contextmanager
def serve_mjpeg(frames: list[np.ndarray], fps: float = 20.0) -> Iterator[MjpegCamera]:
    """Serve ``frames`` in a loop on a free loopback port until the context ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    camera = MjpegCamera(url=f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg", frames=frames, fps=fps)
    server.RequestHandlerClass = _handler(camera)
    server.daemon_threads = True
    camera.sending.set()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield camera
    finally:
        camera.stopping.set()
        server.shutdown()
        server.server_close()
