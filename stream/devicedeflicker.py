"""``--deflicker`` on the GPU plane path (:mod:`stream.devicejob`): :class:`~stream.deflicker.Deflicker`'s
filter for batches of frames that live on a torch device, so a job that asks for it keeps its batches.

The filter is the same: DIS flow between the previous and the current input (on copies at most
``flow_side`` pixels long) carries the previous result onto the current frame, and the two are blended
where the flow explains the input (``strength`` of the previous result up to a residual of ``floor``
levels, or with ``adaptive`` up to the frame's noise floor, nothing from ``threshold`` on). The work is
split where the data is:

    host (device thread)  each frame's luma plane, shrunk, and the flow from the previous one (DIS is
                          OpenCV's, on the CPU; a few ms a frame, while the device runs the batch before)
    device                the small RGB copies of the whole batch, the previous ones warped, the residual
                          and the blend weights at once; then frame by frame, since each frame blends
                          with the one before it: the previous result warped at full size, blended

The flow is computed on the decoder's luma instead of the grey of the RGB frame (the same picture within
the colour matrix); the warps, weights and blend follow ``Deflicker`` step for step in floats, so a job's
frames differ from the host filter's by rounding (a test holds them within 2 levels). One instance serves
one video, from its first frame; it is not thread-safe (the pipeline's device thread calls it).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .deflicker import MASK_BLUR_PX, MIN_FLOW_SIDE, MIN_RAMP, NOISE_FACTOR, Deflicker, small_size


def _identity_grid(w: int, h: int, device: torch.device) -> torch.Tensor:
    """1 x h x w x 2: each pixel's own position in ``grid_sample``'s coordinates (corners at -1 and 1)."""
    ys = torch.linspace(-1.0, 1.0, h, device=device) if h > 1 else torch.zeros(1, device=device)
    xs = torch.linspace(-1.0, 1.0, w, device=device) if w > 1 else torch.zeros(1, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)[None]


class DeviceDeflicker:
    """The temporal filter of ``settings`` (a :class:`Deflicker`, whose strength, threshold, floor, motion and
    flow side it takes) for frames of ``width`` x ``height`` on ``device``. Per batch of ``n`` frames:
    :meth:`flows` on the host, :meth:`shrink` on the device before the model consumes the input, then
    :meth:`apply` on the model's output. ``full_range``: the luma planes use 0-255 (else 16-235)."""

    def __init__(self, settings: Deflicker, width: int, height: int, device: torch.device | str,
                 full_range: bool = False):
        self.strength, self.threshold, self.floor = settings.strength, settings.threshold, settings.floor
        self.adaptive = settings.adaptive
        self.width, self.height, self.device = width, height, torch.device(device)
        self.small = small_size(width, height, settings.flow_side)
        sw, sh = self.small
        self.motion = settings.motion and min(sw, sh) >= MIN_FLOW_SIDE
        self._dis = None
        if self.motion:
            import cv2

            self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        levels = np.arange(256, dtype=np.float32)
        grey = levels if full_range else (levels - 16) * (255 / 219)  # limited-range luma -> grey
        self._lut = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
        self._grey: np.ndarray | None = None  # host: the previous frame's small grey copy
        self._small_prev: torch.Tensor | None = None  # device: 1 x 3 x sh x sw, the previous small input
        self._out_prev: torch.Tensor | None = None  # device: 1 x 3 x H x W, the previous result
        self._started = False  # whether _out_prev holds a frame of this video
        self._grid_small = _identity_grid(sw, sh, self.device)
        self._grid_full = _identity_grid(width, height, self.device) if self.motion else None
        # small-flow pixels -> grid_sample units, on the small copy and at full size
        self._to_small = torch.tensor([2 / max(1, sw - 1), 2 / max(1, sh - 1)], device=self.device)
        self._to_full = torch.tensor([2 * width / sw / max(1, width - 1), 2 * height / sh / max(1, height - 1)],
                                     device=self.device)

    def restart(self) -> None:
        """Forget the history (the next frame is taken as a video's first); the buffers stay."""
        self._grey, self._small_prev, self._started = None, None, False

    def flows(self, lumas: list[np.ndarray], out: np.ndarray) -> None:
        """Host side of a batch: write into ``out`` (at least n x sh x sw x 2 float32) the flow of each of
        the ``n`` luma planes (H x W; uint8, or int16 holding 10-bit values) from the frame before it, in
        small-copy pixels (current(x) ~ previous(x + flow(x))); zeros without motion or history."""
        import cv2

        if not self.motion:
            out[:len(lumas)] = 0.0
            return
        for i, luma in enumerate(lumas):
            if luma.dtype != np.uint8:
                luma = (luma.astype(np.uint16) >> 2).astype(np.uint8)  # 10-bit -> 8-bit
            if (luma.shape[1], luma.shape[0]) != self.small:
                luma = cv2.resize(luma, self.small, interpolation=cv2.INTER_AREA)
            grey = cv2.LUT(luma, self._lut)
            if self._grey is None:
                out[i] = 0.0
            else:
                out[i] = self._dis.calc(grey, self._grey, None)
            self._grey = grey

    def shrink(self, rgb: torch.Tensor) -> torch.Tensor:
        """The small copies (N x 3 x sh x sw floats) of a batch of input frames (N x 3 x H x W, 0-255)."""
        sw, sh = self.small
        if (sw, sh) == (self.width, self.height):
            return rgb.clone()
        return F.interpolate(rgb, size=(sh, sw), mode="area")

    def _keep(self, small: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
        """n x 1 x sh x sw: the weight of each frame's warped previous result, from how far its warped
        previous small input is from its own (``Deflicker._blend_weights``)."""
        n = small.shape[0]
        before = torch.cat([self._small_prev if self._small_prev is not None else small[:1], small[:n - 1]])
        if self.motion:
            grid = self._grid_small + flows * self._to_small
            warped = F.grid_sample(before, grid, mode="bilinear", padding_mode="border", align_corners=True)
            inside = F.grid_sample(torch.ones_like(before[:, :1]), grid, mode="bilinear", padding_mode="zeros",
                                   align_corners=True)
            outside = 255.0 * (1.0 - inside)  # no history from outside the frame
        else:
            warped, outside = before, torch.zeros_like(before[:, :1])
        residual = torch.maximum((small - warped).abs().amax(dim=1, keepdim=True), outside)
        pad = MASK_BLUR_PX // 2
        if min(residual.shape[-2:]) > pad:  # cv2.blur's edges: reflected, the edge pixel once
            residual = F.pad(residual, (pad, pad, pad, pad), mode="reflect")
            residual = F.avg_pool2d(residual, MASK_BLUR_PX, stride=1)
        else:
            residual = F.avg_pool2d(residual, MASK_BLUR_PX, stride=1, padding=pad, count_include_pad=False)
        residual = residual.round_()
        floor = torch.full((n, 1, 1, 1), self.floor, device=residual.device)
        if self.adaptive:  # Deflicker's noise_floor, per frame: from its median (the lower one) residual
            median = residual.flatten(1).median(dim=1).values.view(n, 1, 1, 1)
            floor = (NOISE_FACTOR * median).clamp_(max=self.threshold - MIN_RAMP).clamp_(min=self.floor)
        keep = self.strength * ((self.threshold - residual) / (self.threshold - floor)).clamp_(0.0, 1.0)
        if not self._started:
            keep[0] = 0.0  # the video's first frame: no history
        return keep

    def apply(self, small: torch.Tensor, styled: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
        """Filter the batch's first ``n = len(small)`` results in ``styled`` (N >= n x 3 x H x W floats, 0-255,
        changed in place and returned; rows past n, a padded batch's, are left alone). ``small``: this
        batch's :meth:`shrink`; ``flows``: its :meth:`flows` on this device (n x sh x sw x 2)."""
        n = small.shape[0]
        keep = self._keep(small, flows)
        for i in range(n):
            if i == 0 and not self._started:
                continue
            prev = self._out_prev if i == 0 else styled[i - 1:i]
            if self.motion:
                flow = F.interpolate(flows[i:i + 1].permute(0, 3, 1, 2), size=(self.height, self.width),
                                     mode="bilinear", align_corners=False)
                grid = self._grid_full + flow.permute(0, 2, 3, 1) * self._to_full
                prev = F.grid_sample(prev, grid, mode="bilinear", padding_mode="border", align_corners=True)
            weight = keep[i:i + 1]
            if (self.height, self.width) != weight.shape[-2:]:
                weight = F.interpolate(weight, size=(self.height, self.width), mode="bilinear", align_corners=False)
            styled[i:i + 1].lerp_(prev, weight)  # styled + weight * (prev - styled)
        if self._out_prev is None:
            self._out_prev = torch.empty_like(styled[:1])
        self._out_prev.copy_(styled[n - 1:n])
        self._small_prev, self._started = small[n - 1:n].clone(), True
        return styled
