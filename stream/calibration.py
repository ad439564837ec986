"""INT8 calibration: the range of every tensor :mod:`stream.quant` quantizes, measured on photos.

:func:`calibrate` runs the float generator on images and records each watched module's output range
per channel. :func:`calibrate_style` does that for a style on a folder of photos and saves the result
beside the style (:func:`stream.weights.save_ranges` owns that file and refuses a calibration made
for other weights).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from . import weights
from .errors import AnimestreamError, WeightsError
from .model import ChannelAffine, ConvNormLReLU, Generator, InvertedResBlock
from .quant import Ranges, int8_refusal

DEFAULT_CALIBRATION_SIDE = 512  # pixels, longest side of the calibration photos
CALIBRATION_SCALES = (1.0, 0.5, 0.25)  # each photo is also seen at these fractions of that side
MIN_CALIBRATION_SIDE = 64  # pixels
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def calibrate(model: Generator, images: Iterable[torch.Tensor]) -> Ranges:
    """Per-channel (min, max) of every tensor the INT8 model quantizes, over ``images`` (1 x 3 x H x W, [-1, 1])."""
    watched = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.GroupNorm, ChannelAffine, ConvNormLReLU,
                                                          InvertedResBlock))]
    ranges: Ranges = {}

    def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        lo, hi = output.amin(dim=(0, 2, 3)), output.amax(dim=(0, 2, 3))
        old = ranges.get(module, (lo, hi))
        ranges[module] = (torch.minimum(lo, old[0]), torch.maximum(hi, old[1]))

    handles = [m.register_forward_hook(hook) for m in watched]
    try:
        with torch.inference_mode():
            for image in images:
                model(image.float())
    finally:
        for h in handles:
            h.remove()
    return ranges


def photo_batches(folder: Path, max_side: int) -> Iterator[torch.Tensor]:
    """Every image in ``folder`` (sorted) at each of :data:`CALIBRATION_SCALES` of ``max_side`` on the
    longest side (a smaller cap sees coarser detail, so other ranges), as 1 x 3 x H x W in [-1, 1]."""
    import cv2  # here, not at the top: the engine imports this module for every job

    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise AnimestreamError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) to calibrate with")
    for p in paths:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise AnimestreamError(f"{p}: not a readable image")
        h, w = bgr.shape[:2]
        for fraction in CALIBRATION_SCALES:
            scale = max(MIN_CALIBRATION_SIDE, max_side * fraction) / max(h, w)
            size = (max(8, round(w * scale / 4) * 4), max(8, round(h * scale / 4) * 4))
            rgb = cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            yield torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1


def calibrate_style(style: str | os.PathLike | weights.Style, photos: Path, max_side: int | None = None,
                    float_layers: Sequence[str] = ()) -> tuple[Path, int]:
    """Calibrate the INT8 ranges of ``style`` (a name or a .pt path) on every image in ``photos``, each
    scaled to ``max_side`` pixels (default: the style's recommended cap, else 512), and save them
    beside the style file, with ``float_layers`` (names of :func:`stream.quant.int8_layers`) to run
    in float. Returns (ranges file, number of images)."""
    style = weights.resolve(style)
    model = weights.eager_generator(style)
    refusal = int8_refusal(model)
    if refusal:
        raise WeightsError(f"{style.name}: {refusal}; it runs in float")
    weights.check_float_layers(style, model, float_layers)  # before the photos' minutes, not after
    side = max_side or style.recommended_max_side or DEFAULT_CALIBRATION_SIDE
    batches = 0

    def counted() -> Iterator[torch.Tensor]:  # one image in memory at a time, not the whole folder
        nonlocal batches
        for image in photo_batches(photos, side):
            batches += 1
            yield image

    ranges = calibrate(model, counted())
    count = batches // len(CALIBRATION_SCALES)
    return weights.save_ranges(style, model, ranges, images=count, float_layers=float_layers), count
