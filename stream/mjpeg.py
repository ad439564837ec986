"""MJPEG out: a live run's stylised frames as ``multipart/x-mixed-replace`` over HTTP.

Any browser shows such a stream in an ``<img>``, and so do OBS's Browser and Media sources on every
operating system: a virtual camera for machines with neither v4l2loopback nor OBS Virtual Camera.

    animestream 0 --mjpeg 127.0.0.1:8090     # then open http://127.0.0.1:8090/ or add it to OBS

:class:`MjpegSink` is a live sink (see :class:`stream.pipeline.Sink`): each result is encoded once as
JPEG and handed to every connected client, each at its own pace (a slow client skips frames, it never
holds the pipeline back). It serves from its own threads and :meth:`MjpegSink.close` stops them.
"""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from .errors import SinkError
from .sources import AudioItem, Frame

BOUNDARY = "animestreamframe"
JPEG_QUALITY = 85
WAIT_S = 0.5  # how often a client's thread looks whether the sink is closing


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``PORT`` (then on 127.0.0.1)."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT or PORT, e.g. 127.0.0.1:8090, got {text!r}")
    return host or "127.0.0.1", int(port)


class Broadcast:
    """The latest JPEG and a counter; clients wait for a newer one. Thread-safe."""

    def __init__(self):
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._seq = 0
        self.closed = False

    def publish(self, jpeg: bytes) -> None:
        with self._cond:
            self._jpeg, self._seq = jpeg, self._seq + 1
            self._cond.notify_all()

    def next(self, seen: int) -> tuple[int, bytes | None]:
        """The frame after number ``seen`` (waits up to :data:`WAIT_S`); (seen, None) if none came."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > seen or self.closed, WAIT_S)
            if self._seq > seen and self._jpeg is not None:
                return self._seq, self._jpeg
            return seen, None

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SinkError("cannot encode a frame as JPEG")
    return data.tobytes()


def part(jpeg: bytes) -> bytes:
    """One part of the multipart stream."""
    return (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
            + jpeg + b"\r\n")


class MjpegSink:
    """Serve a live run's results as MJPEG at ``http://HOST:PORT/`` (port 0: a free one, see :attr:`url`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8090):
        self.broadcast = Broadcast()
        broadcast = self.broadcast

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                seen = 0
                while not broadcast.closed:
                    seen, jpeg = broadcast.next(seen)
                    if jpeg is None:
                        continue
                    try:
                        self.wfile.write(part(jpeg))
                    except (BrokenPipeError, ConnectionResetError):
                        return  # the viewer went away

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise SinkError(f"--mjpeg {host}:{port}: cannot listen there ({e.strerror or e})") from None
        self._server.daemon_threads = False  # server_close() joins the viewers' threads (they end within WAIT_S)
        self._thread = threading.Thread(target=self._server.serve_forever, name="animestream-mjpeg")
        self._thread.start()
        self.frames_sent = 0

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def write(self, frame: Frame, image: np.ndarray) -> None:
        self.broadcast.publish(encode_jpeg(image))
        self.frames_sent += 1

    def write_audio(self, item: AudioItem) -> None:
        """MJPEG carries no sound."""

    def close(self) -> None:
        self.broadcast.close()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
