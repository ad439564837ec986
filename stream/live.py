"""Live sources and live style switching.

Live frames are stamped with their capture time: ``pts`` counts microseconds since the first frame
(``time_base`` 1/1,000,000), so a recording plays at real speed whatever the inference rate was.

- :class:`CameraSource`: a camera by index (``0``) or device path (``/dev/video2``) through OpenCV,
  asking for a size, a rate and MJPG; :attr:`CameraSource.description` says what it really gives.
- :class:`PacedSource`: a file (or any :class:`~stream.sources.VideoSource`) released at its own
  frame rate, as a camera would deliver it. This is how the live path is driven without a camera.
- :class:`StyleSwitcher`: the engine callable of a live pipeline; another style can be selected
  while frames flow, and it takes over from the next frame.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from .engine import Engine, EngineOptions, EngineWrapper
from .errors import SourceError
from .sources import DEFAULT_STREAM_TIMEOUT_S, Frame, VideoSource, is_url
from .weights import Style

CAPTURE_TIME_BASE = Fraction(1, 1_000_000)  # seconds per pts tick of live frames
DEFAULT_CAMERA_FPS = 30.0


def is_camera(spec: str) -> bool:
    """``0``, ``1``... or a /dev/video* path name a camera."""
    return spec.isdigit() or spec.startswith("/dev/video")


class _LiveClock:
    """Stamps frames with capture time relative to the first frame."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.index = 0

    def stamp(self, image: np.ndarray) -> Frame:
        now = time.perf_counter()
        if self.t0 is None:
            self.t0 = now
        frame = Frame(self.index, image, int(round((now - self.t0) * 1_000_000)), CAPTURE_TIME_BASE, now)
        self.index += 1
        return frame


class CameraSource:
    """Frames from a camera through OpenCV (RGB uint8). Requests, not demands: see :attr:`description`."""

    time_base = CAPTURE_TIME_BASE
    audio = None

    def __init__(self, spec: str, *, width: int = 0, height: int = 0, fps: float = DEFAULT_CAMERA_FPS):
        import cv2  # here, not at the top: file jobs import this module and never need OpenCV

        self.spec = spec
        # Cameras go straight to V4L2 on Linux: the generic probe tries FFmpeg first, which prints
        # its own error lines before ours. Other specs (a file opened like a camera) use any backend.
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") and is_camera(spec) else cv2.CAP_ANY
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        try:
            self._cap = cv2.VideoCapture(int(spec) if spec.isdigit() else spec, api)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(f"camera {spec}: cannot open it (is it connected, and not in use by another program?)")
        self._cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        if width and height:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            self._cap.set(cv2.CAP_PROP_FPS, fps)
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.rate = Fraction(self._cap.get(cv2.CAP_PROP_FPS) or fps).limit_denominator(1001)
        fourcc = int(self._cap.get(cv2.CAP_PROP_FOURCC))
        codec = "".join(chr((fourcc >> 8 * i) & 0xFF) for i in range(4)).strip("\0 ") or "?"
        self.description = f"camera {spec}: {self.width}x{self.height} @ {float(self.rate):g} fps ({codec})"
        self._clock = _LiveClock()

    def __iter__(self) -> Iterator[Frame]:
        import cv2

        while True:
            ok, bgr = self._cap.read()
            if not ok:
                return
            yield self._clock.stamp(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def close(self) -> None:
        self._cap.release()


class PacedSource:
    """Release the frames of a :class:`VideoSource` at their own timestamps, like a live camera."""

    time_base = CAPTURE_TIME_BASE
    audio = None

    def __init__(self, source: VideoSource):
        self.source = source
        self.width, self.height, self.rate = source.width, source.height, source.rate
        self.description = f"{source.path}: {self.width}x{self.height} @ {float(self.rate):g} fps, played live"
        self._clock = _LiveClock()

    def __iter__(self) -> Iterator[Frame]:
        start: float | None = None
        first: float | None = None
        for item in self.source:
            if not isinstance(item, Frame):
                continue  # live paths carry no sound
            t = item.time if item.time is not None else item.index / float(self.rate)
            if start is None:
                start, first = time.perf_counter(), t
            delay = start + (t - first) - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            yield self._clock.stamp(item.image)

    def close(self) -> None:
        self.source.close()


def open_live_source(spec: str, *, width: int = 0, height: int = 0, fps: float = DEFAULT_CAMERA_FPS,
                     paced: bool = False, timeout: float = DEFAULT_STREAM_TIMEOUT_S
                     ) -> CameraSource | PacedSource | VideoSource:
    """A camera (index or /dev path), a network stream URL (``timeout``: seconds without data before it
    counts as stalled), or a file played at its own pace."""
    if is_camera(spec):
        return CameraSource(spec, width=width, height=height, fps=fps)
    source = open_network_source(spec, timeout) if is_url(spec) else VideoSource(spec)
    if is_url(spec) and not paced:
        return source  # a network stream already arrives in real time
    return PacedSource(source)


def open_network_source(url: str, timeout: float) -> VideoSource:
    """Open a stream URL in a helper thread, so that Ctrl-C reaches the caller at once even while the
    server keeps the connection open and silent (FFmpeg only gives up after its timeout). A helper
    left behind that way closes whatever it opens, and ends within 2 x ``timeout``."""
    result: dict[str, object] = {}
    left = threading.Event()
    lock = threading.Lock()

    def opener() -> None:
        try:
            source = VideoSource(url, timeout=timeout)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting caller
            result["error"] = e
            return
        with lock:
            if left.is_set():
                source.close()  # nobody waits for it any more
            else:
                result["source"] = source

    helper = threading.Thread(target=opener, name="animestream-open", daemon=True)
    helper.start()
    try:
        while helper.is_alive():
            helper.join(0.1)  # short waits: a signal is handled between them
    except BaseException:
        with lock:
            left.set()
            if "source" in result:
                result.pop("source").close()
        raise
    if "error" in result:
        raise result["error"]
    return result["source"]


class StyleSwitcher(EngineWrapper):
    """Callable engine that can change style mid-stream (an :class:`~stream.engine.FrameEngine`).

    ``styles`` are :class:`~stream.weights.Style` values, names or paths; engines are built with
    ``options`` (the same cap, precision, device and threads as ``first``) on first use and kept.
    :meth:`select` loads in the calling thread (the preview's), so capture and inference never wait
    for it; the swap is one reference assignment and the next frame uses the new style.
    """

    def __init__(self, styles: Sequence[Style | str | os.PathLike], first: Engine, options: EngineOptions):
        self.styles = [s if isinstance(s, Style) else str(s) for s in styles]
        self.options = options
        self._engines: dict[int, Engine] = {self.index_of(first.style): first}
        self.current = first
        self._lock = threading.Lock()

    def index_of(self, style: str) -> int:
        names = [s.name if isinstance(s, Style) else
                 (Path(s).stem if os.sep in s or Path(s).suffix else s) for s in self.styles]
        return names.index(style) if style in names else 0

    @property
    def index(self) -> int:
        return next(i for i, e in self._engines.items() if e is self.current)

    def select(self, index: int) -> Engine:
        """Switch to ``styles[index]`` (wrapping around), loading it if needed."""
        index %= len(self.styles)
        with self._lock:
            engine = self._engines.get(index)
            if engine is None:
                engine = Engine(self.styles[index], self.options)
                self._engines[index] = engine
            self.current = engine
        return engine

    def next(self) -> Engine:
        return self.select(self.index + 1)

    def wrapped(self) -> Engine:
        return self.current

    def reset(self) -> None:
        self.current.reset()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.current(image)
