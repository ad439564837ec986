"""A temporal filter against frame-to-frame flicker, motion-compensated.

Each frame is stylised on its own, so noise and compression in the input, and the network's own
rounding, make the style shimmer from frame to frame, on still backgrounds and on things that move.
:class:`Deflicker` follows the input's motion: optical flow between the previous and the current *input*
frame (OpenCV's DIS flow, on a copy at most ``flow_side`` pixels long) carries the previous *result* onto
the current frame, and the two are blended pixel by pixel in proportion to how well that flow explains
the input there. Where the warped previous input matches the current one (a residual of at most
``floor`` levels) the previous result keeps ``strength`` of its weight; from there the weight falls to
nothing at ``threshold`` levels, so what the flow cannot explain (things appearing, occlusions, cuts,
light changing) takes the new result at once, without ghost trails, and so does the first frame after the
wrapped engine's ``style`` changes (a live style switch). ``motion=False`` assumes no motion (the flow is
zero), which is cheaper and only steadies still areas. With ``adaptive`` (the default) the floor follows
the input's own noise: most of a frame is explained by the flow, so what remains there (the frame's median
residual) is sensor noise and compression, and the floor is :data:`NOISE_FACTOR` times that, never below
``floor`` and at least :data:`MIN_RAMP` under ``threshold``; a clean input keeps ``floor``, a noisy
handheld one stops taking its noise for change. With ``overlap`` (live runs) everything but the
final blend (the shrunk input, the flow, the warps and the weights: none of it needs the new result) runs
on a helper thread while the wrapped engine stylises, so the filter adds ~1 ms to a frame's path instead of
its whole cost; :meth:`Deflicker.close` ends that thread.

This is the blind post-processing the video-style-transfer literature measures against (Bonneel et al.,
"Blind Video Temporal Consistency", SIGGRAPH Asia 2015; Lai et al., ECCV 2018). Flicker is measured as
mean|out(t) - out(t-1)| / mean|in(t) - in(t-1)| by :func:`flicker_ratio`, and as the warping error by
``bench/temporal.py``. Every buffer is allocated on the first frame of a size and reused after it.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from .engine import EngineWrapper, FrameEngine

DEFAULT_STRENGTH = 0.9  # share of the (warped) previous result kept where the flow explains the input, 0..1
DEFAULT_THRESHOLD = 8.0  # input residual (0..255, max over RGB) from which the new result is taken alone
DEFAULT_FLOOR = 2.0  # residual up to which the previous result keeps the full strength (noise, compression)
DEFAULT_FLOW_SIDE = 256  # longest side, pixels, of the grey copies the flow is computed on
MASK_BLUR_PX = 5  # smooths the residual so the blend's edges do not show
NOISE_FACTOR = 1.5  # adaptive floor: this many times the frame's median (blurred) residual
MIN_RAMP = 2.0  # levels the adaptive floor stays under the threshold
MIN_FLOW_SIDE = 16  # smaller frames are taken as still: DIS needs a few of its 8 px patches
_SWITCHING = object()  # the history's style while a switch was under way: equal to no style


def _check_settings(strength: float, threshold: float, floor: float, flow_side: int) -> None:
    """A one-line ValueError for settings outside their ranges (see :class:`Deflicker`)."""
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"strength must be in [0, 1), got {strength}")
    if threshold <= 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    if not 0.0 <= floor < threshold:
        raise ValueError(f"floor must be in [0, threshold), got {floor}")
    if flow_side < MIN_FLOW_SIDE:
        raise ValueError(f"flow_side must be >= {MIN_FLOW_SIDE}, got {flow_side}")


def noise_floor(median: float, floor: float, threshold: float) -> float:
    """The adaptive floor (levels) for a frame whose blurred residual has this ``median``."""
    return max(floor, min(NOISE_FACTOR * median, threshold - MIN_RAMP))


def median_level(levels: np.ndarray) -> int:
    """The lower median of a uint8 array (the middle value, or the smaller of the two middle ones)."""
    counts = np.cumsum(np.bincount(levels.ravel(), minlength=256))
    return int(np.searchsorted(counts, (levels.size - 1) // 2 + 1))


def _weights(strength: float, threshold: float, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Look-up tables from a blurred residual (uint8) to the previous result's weight and the new one's."""
    residual = np.arange(256, dtype=np.float32)
    keep = strength * np.clip((threshold - residual) / (threshold - floor), 0.0, 1.0)
    return keep.astype(np.float32), (1.0 - keep).astype(np.float32)


def small_size(width: int, height: int, flow_side: int) -> tuple[int, int]:
    """(w, h) of the copies the flow and the blend weights are computed on: at most ``flow_side`` long."""
    scale = min(1.0, flow_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _shrink(image: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``image`` scaled to ``dst``'s size (area averaging), into ``dst``; copied when the sizes agree."""
    import cv2

    if dst.shape == image.shape:
        np.copyto(dst, image)
        return dst
    return cv2.resize(image, (dst.shape[1], dst.shape[0]), dst=dst, interpolation=cv2.INTER_AREA)


class Deflicker(EngineWrapper):
    """Wrap an engine (RGB uint8 in, same out) with the temporal filter; itself a
    :class:`~stream.engine.FrameEngine`. Not thread-safe; the returned array is reused by the next call.

    ``strength`` (0..1, exclusive of 1): weight of the previous result where the flow explains the input;
    ``threshold`` and ``floor`` (levels, 0..255, floor < threshold): the input residual after motion
    compensation at which that weight is gone, and up to which it is whole (``adaptive``: at least; see
    the module's docstring); ``motion``: follow the input's
    motion (False: assume none); ``flow_side``: longest side (pixels) of the copies the flow and the blend
    weights are computed on (the warp and the blend itself run at full size); ``overlap``: prepare each
    frame's blend on a helper thread while the engine runs (then :meth:`close` it, or use ``with``)."""

    def __init__(self, engine: FrameEngine, *, strength: float = DEFAULT_STRENGTH,
                 threshold: float = DEFAULT_THRESHOLD, floor: float = DEFAULT_FLOOR, motion: bool = True,
                 flow_side: int = DEFAULT_FLOW_SIDE, adaptive: bool = True, overlap: bool = False):
        _check_settings(strength, threshold, floor, flow_side)
        self.engine, self.strength, self.threshold, self.floor = engine, strength, threshold, floor
        self.motion, self.flow_side, self.adaptive = motion, flow_side, adaptive
        self._keep, self._take = _weights(strength, threshold, floor)
        self.last_floor = floor  # the floor the latest frame was blended with (levels)
        self._shape: tuple[int, ...] | None = None
        self._style: object = None  # the wrapped engine's style when the history was taken
        self._dis = None
        self._helper = (ThreadPoolExecutor(1, thread_name_prefix="animestream-deflicker") if overlap else None)

    def close(self) -> None:
        """End the helper thread of ``overlap`` (waits for nothing: it is idle between calls)."""
        if self._helper is not None:
            self._helper.shutdown(wait=True)

    def __enter__(self) -> Deflicker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wrapped(self) -> FrameEngine:
        return self.engine

    def reset(self) -> None:
        self._shape = None
        self.engine.reset()

    def _start(self, image: np.ndarray, result: np.ndarray) -> None:
        """Allocate every buffer for frames of this size and take ``image`` / ``result`` as the history."""
        import cv2

        h, w = image.shape[:2]
        self._shape = image.shape
        sw, sh = small_size(w, h, self.flow_side)
        self._small, self._full = (sw, sh), (w, h)
        self._small_in = _shrink(image, np.empty((sh, sw, 3), np.uint8))
        self._prev_small = self._small_in.copy()
        self._resid = np.empty_like(self._small_in)
        self._diff = np.empty((sh, sw), np.uint8)
        self._keep_small, self._take_small = np.empty((sh, sw), np.float32), np.empty((sh, sw), np.float32)
        if (sw, sh) != (w, h):  # the weights, scaled up to the frame
            self._keep_map, self._take_map = np.empty((h, w), np.float32), np.empty((h, w), np.float32)
        self._motion = None
        if self.motion and min(sw, sh) >= MIN_FLOW_SIDE:
            if self._dis is None:
                self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
            self._motion = _Motion(self._dis, self._small_in, result)
        self._prev_out = result.copy()
        self._out = result.copy()

    def _blend_weights(self, warp_small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per pixel of the frame: the weights of the warped previous result and of the new one, from how
        far the warped previous input is from the current one (on the small copies)."""
        import cv2

        cv2.absdiff(self._small_in, warp_small, dst=self._resid)
        np.maximum(self._resid[..., 0], self._resid[..., 1], out=self._diff)
        np.maximum(self._diff, self._resid[..., 2], out=self._diff)
        if self._motion is not None:
            np.maximum(self._diff, self._motion.outside, out=self._diff)  # no history from outside the frame
        cv2.blur(self._diff, (MASK_BLUR_PX, MASK_BLUR_PX), dst=self._diff)
        floor = noise_floor(median_level(self._diff), self.floor, self.threshold) if self.adaptive else self.floor
        keep, take = (self._keep, self._take) if floor == self.floor else _weights(self.strength, self.threshold, floor)
        self.last_floor = floor
        np.take(keep, self._diff, out=self._keep_small)
        np.take(take, self._diff, out=self._take_small)
        if self._small == self._full:
            return self._keep_small, self._take_small
        for src, dst in ((self._keep_small, self._keep_map), (self._take_small, self._take_map)):
            cv2.resize(src, self._full, dst=dst, interpolation=cv2.INTER_LINEAR)
        return self._keep_map, self._take_map

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import cv2  # here, not at the top: file jobs without --deflicker never need OpenCV

        before = getattr(self.engine, "style", None)  # a live switch may come from another thread, mid-call
        ahead: Future | None = None
        if self._helper is not None and self._shape == image.shape and before == self._style:
            ahead = self._helper.submit(self._prepare, image)  # the input side, while the engine runs
        try:
            result = self.engine(image)
        finally:
            prepared = ahead.result() if ahead is not None else None  # it never outlives the call
        style = getattr(self.engine, "style", None)
        if (self._shape != image.shape or self._prev_out.shape != result.shape or style != self._style
                or style != before):
            # switched during the call: ``result`` may be either style's, so the next frame starts afresh too
            self._style = style if style == before else _SWITCHING
            self._start(image, result)
            return self._out
        keep, take, warp_out = prepared if prepared is not None else self._prepare(image)
        cv2.blendLinear(warp_out, result, keep, take, dst=self._out)
        self._prev_small, self._small_in = self._small_in, self._prev_small
        np.copyto(self._prev_out, self._out)
        return self._out

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Everything of a frame's filtering that does not need its new result: its small copy, the
        previous result warped onto it, and the two blend weights (arrays reused by the next call)."""
        _shrink(image, self._small_in)
        if self._motion is None:
            warp_small, warp_out = self._prev_small, self._prev_out
        else:
            warp_small, warp_out = self._motion.warp(self._small_in, self._prev_small, self._prev_out)
        keep, take = self._blend_weights(warp_small)
        return keep, take, warp_out


class _Motion:
    """The input's motion between two frames and the history it carries: DIS flow between the small grey
    copies of the previous and the current input, which warps the previous small input and the previous
    full-size result onto the current frame. Every buffer is for one size (that of ``small_in`` and
    ``result``); ``outside`` (0..255, per small pixel) says how much of its history came from outside the
    frame after each :meth:`warp`."""

    def __init__(self, dis, small_in: np.ndarray, result: np.ndarray):
        import cv2

        (sh, sw), (h, w) = small_in.shape[:2], result.shape[:2]
        self.dis, self.small, self.full = dis, (sw, sh), (w, h)
        self.gray = cv2.cvtColor(small_in, cv2.COLOR_RGB2GRAY)
        self.grid_small, self.map_small = _grid(sw, sh), np.empty((sh, sw, 2), np.float32)
        self.warp_small, self.warp_out = np.empty_like(small_in), np.empty_like(result)
        self.inside = np.full((sh, sw), 255, np.uint8)  # remapped: below 255 where the flow leaves the frame
        self.outside = np.empty((sh, sw), np.uint8)
        self.flow_scale = np.array([w / sw, h / sh], np.float32)  # small-flow pixels -> frame pixels
        if self.small != self.full:  # the flow, scaled up to the frame
            self.grid_full, self.map_full = _grid(w, h), np.empty((h, w, 2), np.float32)

    def warp(self, small_in: np.ndarray, prev_small: np.ndarray,
             prev_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``prev_small`` and ``prev_out`` carried onto the frame whose small copy is ``small_in``
        (both returned arrays are reused by the next call)."""
        import cv2

        gray = cv2.cvtColor(small_in, cv2.COLOR_RGB2GRAY)
        flow = self.dis.calc(gray, self.gray, None)  # current(x) ~ previous(x + flow(x)), small pixels
        self.gray = gray
        cv2.add(self.grid_small, flow, dst=self.map_small)
        cv2.remap(prev_small, self.map_small, None, cv2.INTER_LINEAR, dst=self.warp_small,
                  borderMode=cv2.BORDER_REPLICATE)
        cv2.remap(self.inside, self.map_small, None, cv2.INTER_LINEAR, dst=self.outside,
                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        cv2.bitwise_not(self.outside, dst=self.outside)
        if self.small == self.full:
            map_full = self.map_small
        else:
            flow *= self.flow_scale
            cv2.resize(flow, self.full, dst=self.map_full, interpolation=cv2.INTER_LINEAR)
            map_full = cv2.add(self.grid_full, self.map_full, dst=self.map_full)
        cv2.remap(prev_out, map_full, None, cv2.INTER_LINEAR, dst=self.warp_out, borderMode=cv2.BORDER_REPLICATE)
        return self.warp_small, self.warp_out


def _grid(w: int, h: int) -> np.ndarray:
    """(h, w, 2) float32: each pixel's own x and y, the identity map of ``cv2.remap``."""
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return np.dstack([gx, gy])


def flicker_ratio(inputs: list[np.ndarray], outputs: list[np.ndarray]) -> float:
    """mean |out(t) - out(t-1)| / mean |in(t) - in(t-1)| over a sequence of equally sized frames."""
    if len(inputs) != len(outputs) or len(inputs) < 2:
        raise ValueError("need two or more input/output frame pairs")
    import cv2

    d_in = np.mean([cv2.absdiff(a, b).mean() for a, b in zip(inputs, inputs[1:])])
    d_out = np.mean([cv2.absdiff(a, b).mean() for a, b in zip(outputs, outputs[1:])])
    return float(d_out / d_in) if d_in > 0 else float("inf")
