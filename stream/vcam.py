"""A virtual camera sink (OBS, Zoom, browsers see it as a webcam) through pyvirtualcam.

The camera is fed at a constant rate by its own thread: when inference is slower than the camera
rate, the last result is sent again, as virtual-camera consumers expect a steady stream.
Backends are pyvirtualcam's (``v4l2loopback`` on Linux, ``obs`` / ``unitycapture`` elsewhere);
tests register a fake one with ``pyvirtualcam.register_backend``.
"""
from __future__ import annotations

import sys
import threading

import numpy as np

from .errors import SinkError
from .sources import AudioItem, Frame

HOW_TO_GET_ONE = {
    "linux": "load v4l2loopback: sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=animestream",
    "win32": "install OBS Studio and start its Virtual Camera once (Controls > Start Virtual Camera)",
    "darwin": "install OBS Studio and start its Virtual Camera once (Controls > Start Virtual Camera)",
}


class VirtualCamera:
    """Send results to a virtual camera at ``fps`` frames per second (keyword-only, validated)."""

    def __init__(self, *, width: int, height: int, fps: float, backend: str | None = None,
                 device: str | None = None):
        if width <= 0 or height <= 0:
            raise ValueError(f"width and height must be > 0 pixels, got {width}x{height}")
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        import pyvirtualcam

        if backend is not None and backend not in pyvirtualcam.camera.BACKENDS:
            known = ", ".join(sorted(pyvirtualcam.camera.BACKENDS))
            raise SinkError(f"virtual camera backend {backend!r} is not available here (available: {known})")
        try:
            self._cam = pyvirtualcam.Camera(width, height, fps, backend=backend, device=device,
                                            fmt=pyvirtualcam.PixelFormat.RGB)
        except (RuntimeError, ValueError) as e:
            how = HOW_TO_GET_ONE.get(sys.platform, HOW_TO_GET_ONE["linux"])
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise SinkError(f"no virtual camera available ({first}); to get one, {how}") from None
        self.device = self._cam.device
        self.fps = fps
        self.frames_sent = 0
        self._latest = np.zeros((height, width, 3), np.uint8)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._feed, name="animestream-vcam", daemon=True)
        self._thread.start()

    def write(self, frame: Frame, image: np.ndarray) -> None:
        if self._error is not None:
            raise SinkError(f"virtual camera {self.device}: {self._error}")
        with self._lock:
            if image.shape == self._latest.shape:
                np.copyto(self._latest, image)

    def write_audio(self, item: AudioItem) -> None:
        """Virtual cameras carry no sound."""

    def _feed(self) -> None:
        out = np.empty_like(self._latest)
        try:
            while not self._stop.is_set():
                with self._lock:
                    np.copyto(out, self._latest)
                self._cam.send(out)
                self.frames_sent += 1
                self._cam.sleep_until_next_frame()
        except BaseException as e:  # noqa: BLE001 - reported by the next write()
            self._error = e

    def close(self) -> None:
        """Stop feeding and release the device. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join()
        self._cam.close()
