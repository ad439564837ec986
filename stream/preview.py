"""An OpenCV preview window for live runs.

The consumer thread hands each result to :meth:`PreviewWindow.write`, which only keeps a copy;
:meth:`PreviewWindow.pump`, called from the main thread (OpenCV's GUI wants one thread), draws the
latest result with an overlay and handles the hotkeys:

    q / Esc   quit (the recording is finished properly; exit code 0)
    s         next style            1-9   pick style 1..9
    m         mirror                space original | stylised split view
"""
from __future__ import annotations

import threading
from collections.abc import Callable

import cv2
import numpy as np

from ._xcb import display_error
from .errors import SinkError
from .sources import AudioItem, Frame

WINDOW = "animestream"
KEY_ESC = 27
FONT = cv2.FONT_HERSHEY_SIMPLEX
OVERLAY_SCALE = 0.5
OVERLAY_PAD_PX = 4
OVERLAY_BOX = (32, 32, 32)  # BGR: dark grey behind the white text
OVERLAY_TEXT = (255, 255, 255)
HELP = "q quit  s/1-9 style  m mirror  space split"


def draw_overlay(image: np.ndarray, lines: list[str]) -> None:
    """White text on a dark box in the top-left corner of ``image`` (BGR, in place).

    One text pass on a solid box: an outline drawn as a second, thicker pass came out wider than the
    text over it with OpenCV 5's font rendering, and the result was hard to read."""
    x = y = OVERLAY_PAD_PX
    sizes = [cv2.getTextSize(text, FONT, OVERLAY_SCALE, 1) for text in lines]
    line_h = max(h + base for (_, h), base in sizes) + OVERLAY_PAD_PX
    width = max(w for (w, _), _ in sizes) + 2 * OVERLAY_PAD_PX
    bottom = min(image.shape[0], y + line_h * len(lines) + OVERLAY_PAD_PX)
    cv2.rectangle(image, (0, 0), (min(image.shape[1] - 1, width), bottom), OVERLAY_BOX, cv2.FILLED)
    for i, (text, ((_, h), _)) in enumerate(zip(lines, sizes)):
        cv2.putText(image, text, (x, y + i * line_h + h + OVERLAY_PAD_PX // 2), FONT, OVERLAY_SCALE,
                    OVERLAY_TEXT, 1, cv2.LINE_AA)


class PreviewWindow:
    """A live preview window. ``on_quit`` and ``on_style(index | None)`` are called on hotkeys
    (``None`` means "next style"). ``stats`` returns ``(fps, latency_ms, dropped)`` for the overlay.
    Raises :class:`SinkError` when no window can open here (no X server answers)."""

    def __init__(self, *, on_quit: Callable[[], None], on_style: Callable[[int | None], str],
                 stats: Callable[[], tuple[float, float, int]], title: str = WINDOW):
        self.title = title
        self.on_quit, self.on_style, self.stats = on_quit, on_style, stats
        self.mirror = False
        self.split = False
        self.style_name = ""
        self._lock = threading.Lock()
        self._original: np.ndarray | None = None
        self._result: np.ndarray | None = None
        self._fresh = False
        self._closed = False
        self._shown = False  # a picture was shown: from then on, a window that is gone was closed
        reason = display_error()
        if reason is not None:  # OpenCV would abort the process
            raise SinkError(f"--preview: {reason}; record to an OUTPUT, or use --vcam or --mjpeg")
        cv2.namedWindow(self.title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)

    def write(self, frame: Frame, image: np.ndarray) -> None:
        with self._lock:
            if self._result is None or self._result.shape != image.shape:
                self._result = np.empty_like(image)
                self._original = np.empty_like(frame.image)
            np.copyto(self._result, image)
            if self._original.shape == frame.image.shape:
                np.copyto(self._original, frame.image)
            self._fresh = True

    def write_audio(self, item: AudioItem) -> None:
        """Live previews are silent."""

    def compose(self) -> np.ndarray | None:
        """The picture the window shows now (BGR), or None before the first result."""
        with self._lock:
            if self._result is None:
                return None
            shown = np.concatenate([self._original, self._result], axis=1) if self.split else self._result.copy()
            self._fresh = False
        if self.mirror:
            shown = shown[:, ::-1]
        shown = cv2.cvtColor(shown, cv2.COLOR_RGB2BGR)
        draw_overlay(shown, self.overlay_lines())
        return shown

    def overlay_lines(self) -> list[str]:
        fps, latency_ms, dropped = self.stats()
        return [f"{self.style_name}  {fps:4.1f} fps  {latency_ms:4.0f} ms  dropped {dropped}", HELP]

    def pump(self) -> None:
        """Draw the latest result and handle one key press. Call from the main thread, often.

        Closing the window (its close button, or the window manager) quits as ``q`` does: showing the
        next frame would otherwise open a new window."""
        if self._closed:
            return
        if self._shown and not self._visible():
            self._closed = True
            self.on_quit()
            return
        if self._fresh:
            shown = self.compose()
            if shown is not None:
                cv2.imshow(self.title, shown)
                self._shown = True
        self.handle_key(cv2.waitKey(1) & 0xFF)

    def handle_key(self, key: int) -> None:
        if key in (ord("q"), KEY_ESC):
            self.on_quit()
        elif key == ord("s"):
            self.style_name = self.on_style(None)
        elif ord("1") <= key <= ord("9"):
            self.style_name = self.on_style(key - ord("1"))
        elif key == ord("m"):
            self.mirror = not self.mirror
        elif key == ord(" "):
            self.split = not self.split

    def _visible(self) -> bool:
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:  # Qt: the window, and with it the GUI's receiver, is gone
            return False

    def close(self) -> None:
        """Close the window. Idempotent."""
        if not self._closed:
            self._closed = True
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:
                pass  # already gone
