"""INT8 calibration: the range of every tensor :mod:`stream.quant` quantizes, measured on photos.

:func:`calibrate` runs the float generator on images and records each watched module's output range
per channel. :func:`calibrate_style` does that for a style on a folder of photos and saves the result
as ``NAME.ranges`` beside the style's ``.pt``; :func:`load_ranges` refuses a file made for other
weights (the style's sha256 is stored in it) or another architecture.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import nn

from . import weights
from .errors import AnimestreamError, WeightsError
from .model import ConvNormLReLU, Generator, InvertedResBlock
from .quant import Ranges

DEFAULT_CALIBRATION_SIDE = 512  # pixels, longest side of the calibration photos
CALIBRATION_SCALES = (1.0, 0.5, 0.25)  # each photo is also seen at these fractions of that side
MIN_CALIBRATION_SIDE = 64  # pixels
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def calibrate(model: Generator, images: Iterable[torch.Tensor]) -> Ranges:
    """Per-channel (min, max) of every tensor the INT8 model quantizes, over ``images`` (1 x 3 x H x W, [-1, 1])."""
    watched = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.GroupNorm, ConvNormLReLU, InvertedResBlock))]
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


def ranges_path(style_path: Path) -> Path:
    """Where the calibrated ranges of the style file ``style_path`` live: ``NAME.ranges`` beside it."""
    return style_path.with_suffix(weights.RANGES_SUFFIX)


def style_sha256(path: Path, meta: dict) -> str:
    """The sha256 of the style file ``path``: its sidecar's (``meta``, checked on load), else hashed now."""
    return meta.get("sha256") or weights.sha256_of(path)


def save_ranges(model: Generator, ranges: Ranges, path: Path, *, style_sha256: str, images: int) -> None:
    """Write ``ranges`` (keyed by module name) for the style whose file has ``style_sha256``, measured
    on ``images`` photos; atomic."""
    names = {m: n for n, m in model.named_modules()}
    data = {"style_sha256": style_sha256, "images": images,
            "ranges": {names[m]: torch.stack(r) for m, r in ranges.items()}}
    part = path.with_name(path.name + ".part")
    torch.save(data, part)
    os.replace(part, path)


def load_ranges(model: Generator, path: Path, *, style_sha256: str) -> Ranges:
    """The ranges saved by :func:`save_ranges` for ``model``; :class:`WeightsError` if stale or unreadable."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise WeightsError(f"{path}: unreadable INT8 calibration ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(data, dict) or data.get("style_sha256") != style_sha256:
        raise WeightsError(f"{path}: INT8 calibration of another version of this style; calibrate it again")
    modules = dict(model.named_modules())
    try:
        return {modules[n]: (r[0], r[1]) for n, r in data["ranges"].items()}
    except (KeyError, IndexError, TypeError):
        raise WeightsError(f"{path}: INT8 calibration does not fit this style's architecture") from None


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


def calibrate_style(style: str | os.PathLike, photos: Path, max_side: int | None = None) -> tuple[Path, int]:
    """Calibrate the INT8 ranges of ``style`` (a name or a .pt path) on every image in ``photos``, each
    scaled to ``max_side`` pixels (default: the style's recommended cap, else 512), and save them
    beside the style file. Returns (ranges file, number of images)."""
    path, meta = weights.resolve(style)
    model = weights.eager_generator(weights.load_model(path))
    side = max_side or meta.get("recommended_max_side") or DEFAULT_CALIBRATION_SIDE
    batches = 0

    def counted() -> Iterator[torch.Tensor]:  # one image in memory at a time, not the whole folder
        nonlocal batches
        for image in photo_batches(photos, side):
            batches += 1
            yield image

    ranges = calibrate(model, counted())
    count = batches // len(CALIBRATION_SCALES)
    out = ranges_path(path)
    save_ranges(model, ranges, out, style_sha256=style_sha256(path, meta), images=count)
    return out, count
