"""The state behind the web service (:mod:`stream.webapp`): engines, one model call at a time, a bounded wait.

One model call runs at a time: on a CPU the engine already uses every core, and two calls would
only share them. At most ``queue`` requests wait for it; any more are answered 503 at once, so a
burst cannot pile up latency or memory. An engine is built once per (style, max_side) and kept; at
most :data:`MAX_ENGINES` are kept, the least recently used is dropped first. A picture's size is read
from its header and a picture over :data:`MAX_PIXELS` is refused (413) before it is decoded.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from . import weights
from .errors import AnimestreamError, StyleNotFoundError
from .imageinfo import HEADER_BYTES, size_from_bytes

MAX_BODY_BYTES = 32 * 1024 * 1024  # largest accepted upload
MAX_PIXELS = 50_000_000  # largest decoded image, width x height
MAX_REQUEST_SIDE = 1024  # largest max_side a request may ask for, pixels: the model's memory grows with its square
MAX_ENGINES = 2  # engines kept at once (each holds its weights and buffers)
RETRY_AFTER_S = 1  # what a 503 suggests
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

    @property
    def live_style(self) -> str:
        """The style a live stream starts with: the default itself when it is a real-time one, else its
        real-time sibling (``NAME-lite``) when there is one, else :data:`weights.DEFAULT_LIVE_STYLE`."""
        listed = {s.name: s for s in weights.list_styles()}
        default = listed.get(self.default_style)
        if default is not None and default.lite:
            return self.default_style
        sibling = f"{self.default_style}-lite"
        if sibling in listed:
            return sibling
        return weights.DEFAULT_LIVE_STYLE if weights.DEFAULT_LIVE_STYLE in listed else self.default_style

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

    def has_room(self) -> bool:
        """Whether a request could take a place in the queue now (asked before its body is read)."""
        if self._slots.acquire(blocking=False):
            self._slots.release()
            return True
        return False

    def run(self, style: str, max_side: int | None, rgb: np.ndarray) -> np.ndarray:
        """``rgb`` stylised by ``style`` at ``max_side``, under the model lock; a new array."""
        return self.infer(style, max_side, rgb)[0]

    def infer(self, style: str, max_side: int | None, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """(``rgb`` stylised, a new RGB array; model milliseconds), under the model lock."""
        with self._model:
            try:
                engine = self._engine(style, max_side)
            except StyleNotFoundError as e:
                raise RequestError(400, str(e)) from None
            start = time.perf_counter()
            reset = getattr(engine, "reset", None)  # an Engine has one; a plain function need not
            if reset is not None:
                reset()  # each request's picture on its own: the same bytes back for the same picture
            out = engine(rgb).copy()  # the engine reuses its result array
            return out, (time.perf_counter() - start) * 1000

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
        """(encoded image, content type, model milliseconds) for an encoded input image: :meth:`decode`,
        :meth:`infer` and :meth:`encode` in turn (a server may run them on different threads, so that
        one request's decoding and encoding overlap another's model call)."""
        out, ms = self.infer(style, max_side, self.decode(body, style, fmt))
        return (*self.encode(out, fmt), ms)

    def decode(self, body: bytes, style: str, fmt: str) -> np.ndarray:
        """The request's image as RGB, after checking its style, format and size (from the header first,
        so that a decompression bomb is refused before it is decoded); :class:`RequestError` if not."""
        import cv2

        if style != self.default_style and style not in {s.name for s in weights.list_styles()}:
            raise RequestError(400, f"unknown style {style!r}; GET /v1/styles lists them")
        if fmt not in FORMATS:
            raise RequestError(400, f"format must be one of png, jpeg, not {fmt!r}")
        declared = size_from_bytes(body[:HEADER_BYTES])
        if declared is not None and declared[0] * declared[1] > MAX_PIXELS:
            raise RequestError(413, f"{declared[0]}x{declared[1]} is over {MAX_PIXELS} pixels")
        try:
            bgr = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR) if body else None
        except cv2.error:
            bgr = None
        if bgr is None:
            raise RequestError(415, "the body is not an image OpenCV can read (JPEG, PNG, WebP, BMP, TIFF...)")
        if bgr.shape[0] * bgr.shape[1] > MAX_PIXELS:
            raise RequestError(413, f"{bgr.shape[1]}x{bgr.shape[0]} is over {MAX_PIXELS} pixels")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def encode(self, rgb: np.ndarray, fmt: str) -> tuple[bytes, str]:
        """(``rgb`` encoded as ``fmt``, its content type)."""
        import cv2

        ext, content_type = FORMATS[fmt]
        params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext == ".jpg" else []
        ok, encoded = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise RequestError(500, f"could not encode the result as {fmt}")
        return encoded.tobytes(), content_type


def max_side_param(value: str | None) -> int | None:
    """A request's ``max_side``: None when absent, else a whole number of pixels in 1..MAX_REQUEST_SIDE."""
    if value is None:
        return None
    try:
        side = int(value)
    except ValueError:
        side = -1
    if not 0 < side <= MAX_REQUEST_SIDE:
        raise RequestError(400, f"max_side must be a whole number of pixels from 1 to {MAX_REQUEST_SIDE}, "
                                f"not {value!r}")
    return side
