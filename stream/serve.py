"""An HTTP service: POST an image, get it back stylised.

    animestream serve --port 8000
    curl --data-binary @photo.jpg -o anime.png 'http://127.0.0.1:8000/v1/stylize?style=paprika'

Endpoints:

* ``POST /v1/stylize`` with the image file as the body (JPEG, PNG, WebP, BMP...); query
  ``style=NAME`` (a registered style; default: the server's), ``max_side=PX`` (1 to
  :data:`MAX_REQUEST_SIDE`; default: the server's), ``format=png|jpeg``.
  Answers the image at the input's size, with ``X-Animestream-Style`` and ``X-Animestream-Ms``
  (milliseconds in the model, waiting excluded).
* ``GET /v1/styles``: the registered styles as JSON; ``GET /healthz``: ``{"status": "ok"}``.

Errors are JSON, ``{"error": "one line"}``: 400 for a body that is not an image or a bad
parameter, 404 for another path, 411 without Content-Length, 413 above :data:`MAX_BODY_BYTES`,
503 with ``Retry-After`` when busy.

One model call runs at a time: on a CPU the engine already uses every core, and two calls would
only share them. At most ``queue`` requests wait for it; any more are answered 503 at once, so a
burst cannot pile up latency or memory. An engine is built once per (style, max_side) and kept; at
most :data:`MAX_ENGINES` are kept, the least recently used is dropped first.
"""
from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np

from . import __version__, weights
from .errors import AnimestreamError, StyleNotFoundError
from .imageinfo import HEADER_BYTES, size_from_bytes

MAX_BODY_BYTES = 32 * 1024 * 1024  # largest accepted upload
MAX_PIXELS = 50_000_000  # largest decoded image, width x height
MAX_REQUEST_SIDE = 1024  # largest max_side a request may ask for, pixels: the model's memory grows with its square
MAX_ENGINES = 2  # engines kept at once (each holds its weights and buffers)
RETRY_AFTER_S = 1  # what a 503 suggests
KEEPALIVE_TIMEOUT_S = 5  # an idle connection is closed after this; shutdown waits for it at most that long
JPEG_QUALITY = 92  # 0..100, for format=jpeg
FORMATS = {"png": (".png", "image/png"), "jpeg": (".jpg", "image/jpeg"), "jpg": (".jpg", "image/jpeg")}

EngineFactory = Callable[[str, "int | None"], Callable[[np.ndarray], np.ndarray]]


class RequestError(AnimestreamError, ValueError):
    """A request the service refuses; ``status`` is its HTTP status code."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class StyleService:
    """The service's state: engines by (style, max_side), one model call at a time, a bounded wait.

    ``engine_factory(style, max_side)`` builds an engine (RGB uint8 frame in, same size out); tests
    pass a slow or failing one. ``queue`` is how many requests may wait while one runs (>= 0).
    """

    def __init__(self, engine_factory: EngineFactory, *, default_style: str, queue: int = 4):
        if queue < 0:
            raise ValueError(f"queue must be >= 0, not {queue}")
        self.engine_factory, self.default_style = engine_factory, default_style
        self._slots = threading.BoundedSemaphore(queue + 1)  # the running call and those waiting
        self._model = threading.Lock()
        self._engines: OrderedDict[tuple[str, int | None], Callable] = OrderedDict()

    def adopt(self, style: str, max_side: int | None, engine: Callable[[np.ndarray], np.ndarray]) -> None:
        """Keep an engine built beforehand for (style, max_side)."""
        with self._model:
            self._engines[(style, max_side)] = engine

    def _engine(self, style: str, max_side: int | None) -> Callable[[np.ndarray], np.ndarray]:
        key = (style, max_side)
        if key not in self._engines:
            while len(self._engines) >= MAX_ENGINES:
                self._engines.popitem(last=False)
            self._engines[key] = self.engine_factory(style, max_side)
        self._engines.move_to_end(key)
        return self._engines[key]

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the ``queue + 1`` places for a request; :class:`RequestError` 503 when none is free."""
        if not self._slots.acquire(blocking=False):
            raise RequestError(503, "busy: every queue slot is taken, try again shortly")
        try:
            yield
        finally:
            self._slots.release()

    def stylize(self, body: bytes, style: str, max_side: int | None, fmt: str) -> tuple[bytes, str, float]:
        """(encoded image, content type, model milliseconds) for an encoded input image."""
        import cv2

        if style != self.default_style and style not in {s.name for s in weights.list_styles()}:
            raise RequestError(400, f"unknown style {style!r}; GET /v1/styles lists them")
        if fmt not in FORMATS:
            raise RequestError(400, f"format must be one of png, jpeg, not {fmt!r}")
        declared = size_from_bytes(body[:HEADER_BYTES])  # refuse a decompression bomb before decoding it
        if declared is not None and declared[0] * declared[1] > MAX_PIXELS:
            raise RequestError(413, f"{declared[0]}x{declared[1]} is over {MAX_PIXELS} pixels")
        try:
            bgr = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR) if body else None
        except cv2.error:
            bgr = None
        if bgr is None:
            raise RequestError(400, "the body is not an image OpenCV can read")
        if bgr.shape[0] * bgr.shape[1] > MAX_PIXELS:
            raise RequestError(413, f"{bgr.shape[1]}x{bgr.shape[0]} is over {MAX_PIXELS} pixels")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        del bgr
        with self._model:
            try:
                engine = self._engine(style, max_side)
            except StyleNotFoundError as e:
                raise RequestError(400, str(e)) from None
            start = time.perf_counter()
            out = cv2.cvtColor(engine(rgb), cv2.COLOR_RGB2BGR)  # a copy: the engine reuses its result
            ms = (time.perf_counter() - start) * 1000
        ext, content_type = FORMATS[fmt]
        params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext == ".jpg" else []
        ok, encoded = cv2.imencode(ext, out, params)
        if not ok:
            raise RequestError(500, f"could not encode the result as {fmt}")
        return encoded.tobytes(), content_type, ms


def _styles_json() -> list[dict]:
    return [{"name": s.name, "origin": s.origin, "license": s.meta.get("license"),
             "recommended_max_side": s.recommended_max_side, "quality": s.meta.get("quality")}
            for s in weights.list_styles()]


def _max_side(values: list[str]) -> int | None:
    if not values:
        return None
    try:
        side = int(values[0])
    except ValueError:
        side = -1
    if not 0 < side <= MAX_REQUEST_SIDE:
        raise RequestError(400, f"max_side must be a whole number of pixels from 1 to {MAX_REQUEST_SIDE}, "
                                f"not {values[0]!r}")
    return side


class _Handler(BaseHTTPRequestHandler):
    server_version = f"animestream/{__version__}"
    protocol_version = "HTTP/1.1"
    timeout = KEEPALIVE_TIMEOUT_S
    server: ServiceServer

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode() + b"\n", "application/json", headers)

    def _error(self, error: RequestError) -> None:
        headers = {"Retry-After": str(RETRY_AFTER_S)} if error.status == 503 else {}
        self.close_connection = True  # a body left unread would be taken for the next request
        headers["Connection"] = "close"
        self._json(error.status, {"error": str(error)}, headers)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = urlsplit(self.path).path
        if path == "/healthz":
            self._json(200, {"status": "ok"})
        elif path == "/v1/styles":
            self._json(200, {"default": self.server.service.default_style, "styles": _styles_json()})
        else:
            self._error(RequestError(404, f"no such path: {path}"))

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        service = self.server.service
        style = query.get("style", [service.default_style])[0]
        try:
            if url.path != "/v1/stylize":
                raise RequestError(404, f"no such path: {url.path}")
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                raise RequestError(411, "send the image with a Content-Length")
            if int(length) > MAX_BODY_BYTES:
                raise RequestError(413, f"the body is over {MAX_BODY_BYTES // 2**20} MiB")
            with service.slot():  # before the body is read: a burst holds at most queue + 1 bodies
                image, content_type, ms = service.stylize(self.rfile.read(int(length)), style,
                                                          _max_side(query.get("max_side", [])),
                                                          query.get("format", ["png"])[0].lower())
        except RequestError as e:
            self._error(e)
            return
        except AnimestreamError as e:
            self._error(RequestError(500, str(e)))
            return
        self._send(200, image, content_type, {"X-Animestream-Style": style, "X-Animestream-Ms": f"{ms:.1f}"})

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's signature)
        if self.server.log is not None:
            self.server.log(f"{self.address_string()} {format % args}")


class ServiceServer(ThreadingHTTPServer):
    """A threaded HTTP server for a :class:`StyleService`; ``server_close()`` joins every request thread."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], service: StyleService,
                 log: Callable[[str], None] | None = None):
        super().__init__(address, _Handler)
        self.service, self.log = service, log

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"
