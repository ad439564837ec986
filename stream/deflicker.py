"""A cheap temporal filter against frame-to-frame flicker.

Each frame is stylised on its own, so noise and compression in a static background make the style
shimmer. :class:`Deflicker` blends the new result with the previous one, pixel by pixel, in
proportion to how little the *input* changed there: static areas settle, while anything that moves
takes the new result at once (no ghost trails). Flicker is measured as
mean|out(t) - out(t-1)| / mean|in(t) - in(t-1)| by :func:`flicker_ratio`.
"""
from __future__ import annotations

import numpy as np

from .engine import EngineWrapper, FrameEngine

DEFAULT_STRENGTH = 0.7  # share of the previous result kept where the input is unchanged, 0..1
DEFAULT_THRESHOLD = 10.0  # input change (0..255) above which a pixel counts as moving
MASK_BLUR_PX = 5  # smooths the motion mask so its edges do not show


class Deflicker(EngineWrapper):
    """Wrap an engine (RGB uint8 in, same out) with the temporal filter; itself a
    :class:`~stream.engine.FrameEngine`. Not thread-safe."""

    def __init__(self, engine: FrameEngine, *, strength: float = DEFAULT_STRENGTH,
                 threshold: float = DEFAULT_THRESHOLD):
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"strength must be in [0, 1), got {strength}")
        if threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        self.engine, self.strength, self.threshold = engine, strength, threshold
        self._prev_in: np.ndarray | None = None
        self._prev_out: np.ndarray | None = None
        self._out = self._diff = self._mask = self._scratch = None

    def wrapped(self) -> FrameEngine:
        return self.engine

    def reset(self) -> None:
        self._prev_in = None
        self.engine.reset()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import cv2  # here, not at the top: file jobs without --deflicker never need OpenCV

        result = self.engine(image)
        if self._prev_in is None or self._prev_in.shape != image.shape:
            self._prev_in = image.copy()
            self._prev_out = result.astype(np.float32)
            self._out = np.empty_like(result)
            self._diff = np.empty(image.shape[:2], np.float32)
            self._mask = np.empty(image.shape[:2], np.float32)
            self._scratch = np.empty(image.shape, np.float32)
            np.copyto(self._out, result)
            return self._out
        cv2.absdiff(image, self._prev_in, dst=self._prev_in)  # reuse: |in(t) - in(t-1)|
        np.max(self._prev_in, axis=2, out=self._diff)
        cv2.blur(self._diff, (MASK_BLUR_PX, MASK_BLUR_PX), dst=self._diff)
        np.multiply(self._diff, -1.0 / self.threshold, out=self._mask)
        self._mask += 1.0
        np.clip(self._mask, 0.0, 1.0, out=self._mask)
        self._mask *= self.strength
        # prev_out <- result + mask * (prev_out - result)
        self._prev_out -= result
        self._prev_out *= self._mask[..., None]
        self._prev_out += result
        np.copyto(self._prev_in, image)
        np.add(self._prev_out, 0.5, out=self._scratch)  # round half up on the way to uint8
        np.clip(self._scratch, 0, 255, out=self._scratch)
        self._out[...] = self._scratch
        return self._out


def flicker_ratio(inputs: list[np.ndarray], outputs: list[np.ndarray]) -> float:
    """mean |out(t) - out(t-1)| / mean |in(t) - in(t-1)| over a sequence of equally sized frames."""
    if len(inputs) != len(outputs) or len(inputs) < 2:
        raise ValueError("need two or more input/output frame pairs")
    import cv2

    d_in = np.mean([cv2.absdiff(a, b).mean() for a, b in zip(inputs, inputs[1:])])
    d_out = np.mean([cv2.absdiff(a, b).mean() for a, b in zip(outputs, outputs[1:])])
    return float(d_out / d_in) if d_in > 0 else float("inf")
