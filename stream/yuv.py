"""Colour conversion between a decoder's YUV planes and RGB, in torch, batched, on whatever device.

The host hands over frames as PyAV's ``VideoFrame.to_ndarray()`` packs them (no conversion, one copy):

- ``yuv420p`` / ``yuvj420p`` / ``yuv420p10le``: (H * 3/2) x W, the Y plane, then U and V (each H/2 x W/2)
  flattened one after the other (uint8; uint16 holding 10-bit values for ``yuv420p10le``);
- ``nv12``: (H * 3/2) x W, the Y plane, then interleaved U, V pairs (H/2 rows of W/2 pairs);
- ``yuv444p`` / ``yuvj444p``: 3 x H x W.

:func:`to_rgb` turns a batch of those into RGB floats in [0, 255] (N x 3 x H x W) with the stream's
matrix (BT.601, BT.709 or BT.2020 as tagged; untagged is BT.601, as swscale takes it) and range (limited,
or full for ``yuvj*`` or a full-range tag); :func:`to_yuv420p` turns RGB floats back into packed
``yuv420p`` for the encoder, BT.601 limited range (what swscale writes for today's ``rgb24`` frames).
Chroma is interpolated bilinearly on the way in (:func:`upsample_chroma`) and averaged over each 2x2
block on the way out. Sizes must be even for the 4:2:0 formats.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

FORMATS = ("yuv420p", "yuvj420p", "nv12", "yuv420p10le", "yuv444p", "yuvj444p")
KR_KB = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722), "bt2020": (0.2627, 0.0593)}
# PyAV's Colorspace values (FFmpeg's AVColorSpace) -> matrix; anything else (unspecified, FCC, ...) is BT.601
MATRIX_OF_COLORSPACE = {1: "bt709", 5: "bt601", 6: "bt601", 9: "bt2020", 10: "bt2020"}
FULL_RANGE_TAG = 2  # AVCOL_RANGE_JPEG


@dataclass(frozen=True)
class PlaneFormat:
    """How a stream's decoded pictures are laid out and what their numbers mean."""

    name: str  # one of FORMATS
    matrix: str = "bt601"  # one of KR_KB
    full_range: bool = False

    def __post_init__(self):
        if self.name not in FORMATS:
            raise ValueError(f"plane format must be one of {', '.join(FORMATS)}, not {self.name!r}")
        if self.matrix not in KR_KB:
            raise ValueError(f"matrix must be one of {', '.join(KR_KB)}, not {self.matrix!r}")

    @property
    def bits(self) -> int:
        return 10 if self.name.endswith("10le") else 8

    @property
    def subsampled(self) -> bool:
        return "444" not in self.name

    def packed_shape(self, width: int, height: int) -> tuple[int, ...]:
        """The shape of one frame as ``to_ndarray()`` gives it."""
        return (3, height, width) if not self.subsampled else (height * 3 // 2, width)


def plane_format_of(pix_fmt: str, colorspace: int = 2, color_range: int = 0) -> PlaneFormat | None:
    """The :class:`PlaneFormat` of a decoder's pixel format and colour tags (PyAV's ints), or None when
    the format is not one this module reads."""
    if pix_fmt not in FORMATS:
        return None
    full = pix_fmt.startswith("yuvj") or color_range == FULL_RANGE_TAG
    return PlaneFormat(pix_fmt, MATRIX_OF_COLORSPACE.get(int(colorspace), "bt601"), full)


def _split(packed: torch.Tensor, fmt: PlaneFormat, height: int, width: int
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Y, U, V planes of a packed batch (views where the layout allows), each N x h x w."""
    n = packed.shape[0]
    if not fmt.subsampled:
        return packed[:, 0], packed[:, 1], packed[:, 2]
    y = packed[:, :height]
    rest = packed[:, height:].reshape(n, -1)
    if fmt.name == "nv12":
        uv = rest.reshape(n, height // 2, width // 2, 2)
        return y, uv[..., 0], uv[..., 1]
    quarter = (height // 2) * (width // 2)
    return y, rest[:, :quarter].reshape(n, height // 2, width // 2), rest[:, quarter:].reshape(n, height // 2, width // 2)


def upsample_chroma(c: torch.Tensor) -> torch.Tensor:
    """A 4:2:0 chroma plane (N x h x w, float) at twice its size, bilinearly with centred samples (edges
    repeat): what swscale's accurate path (``ACCURATE_RND | FULL_CHR_H_INT``) computes, within rounding.
    Its fast default path repeats each sample over its 2x2 block and truncates (0.5-1.7 levels darker)."""
    return F.interpolate(c[:, None], scale_factor=2, mode="bilinear", align_corners=False)[:, 0]


def to_rgb(packed: torch.Tensor, fmt: PlaneFormat, height: int, width: int) -> torch.Tensor:
    """RGB float32 in [0, 255], N x 3 x H x W, from a batch of packed frames (N x :meth:`PlaneFormat.packed_shape`)
    on any device."""
    y, u, v = (p.float() for p in _split(packed, fmt, height, width))
    if fmt.subsampled:
        u, v = upsample_chroma(u), upsample_chroma(v)
    scale = float(1 << (fmt.bits - 8))
    if fmt.full_range:
        top = 255.0 * scale
        luma, cb, cr = y / top, (u - 128 * scale) / top, (v - 128 * scale) / top
    else:
        luma, cb, cr = (y - 16 * scale) / (219 * scale), (u - 128 * scale) / (224 * scale), (v - 128 * scale) / (224 * scale)
    kr, kb = KR_KB[fmt.matrix]
    kg = 1.0 - kr - kb
    r = luma + 2 * (1 - kr) * cr
    g = luma - (2 * kb * (1 - kb) / kg) * cb - (2 * kr * (1 - kr) / kg) * cr
    b = luma + 2 * (1 - kb) * cb
    return torch.stack([r, g, b], dim=1).mul_(255.0).clamp_(0.0, 255.0)


def to_yuv420p(rgb: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Packed ``yuv420p`` uint8, N x (H * 3/2) x W, BT.601 limited range, from RGB floats in [0, 255]
    (N x 3 x H x W, H and W even), written into ``out`` when given (same device)."""
    n, _, height, width = rgb.shape
    kr, kb = KR_KB["bt601"]
    kg = 1.0 - kr - kb
    r, g, b = (c / 255.0 for c in rgb.unbind(1))
    luma = kr * r + kg * g + kb * b
    small = F.avg_pool2d(rgb, 2) / 255.0  # chroma from each 2x2 block's mean colour
    sl = kr * small[:, 0] + kg * small[:, 1] + kb * small[:, 2]
    cb = (small[:, 2] - sl) / (2 * (1 - kb))
    cr = (small[:, 0] - sl) / (2 * (1 - kr))
    if out is None:
        out = torch.empty((n, height * 3 // 2, width), dtype=torch.uint8, device=rgb.device)
    flat = out.view(n, -1)
    quarter = (height // 2) * (width // 2)
    planes = ((luma.mul(219).add_(16), 0, height * width),
              (cb.mul(224).add_(128), height * width, quarter),
              (cr.mul(224).add_(128), height * width + quarter, quarter))
    for plane, start, size in planes:
        flat[:, start:start + size].copy_(plane.reshape(n, -1).round_().clamp_(0, 255))
    return out
