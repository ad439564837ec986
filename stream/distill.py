"""Distil a style into a smaller generator for real time: ``<style>-lite``.

    python -m stream.distill --teacher paprika --photos ../shared/media/photos

The teacher is a full style as animestream runs it (the engine, at its own precision). It stylises
every photo once at a few sizes (cached in ``--cache``); the student, a narrower generator, learns
to reproduce those outputs from random crops. Any photos will do: the teacher defines the target for
every input, so there is no aligned-pair shortage as there is when training a style. The last
``--val`` photos (sorted by name) are held back, and the student's PSNR against the teacher on them,
both at the student's recommended inference cap, goes into the sidecar. A rerun with ``--crop 0``
and more ``--steps`` continues the same run on whole images, normalised as at inference.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from . import weights
from .engine import SIDE_MULTIPLE, Engine
from .model import Generator
from .quality import psnr
from .train import (DEFAULT_CACHE, EDGE_WEIGHT, EMA_DECAY, CropSampler, Run, pick_device, style_loss, to_image,
                    to_tensor)

LITE_WIDTH = 0.5  # of the full generator's channels
LITE_BLOCKS = 4
LITE_MAX_SIDE = 160  # pixels; where a 640x480 live stream keeps >= 24 fps on 2 cores
LEVELS = (160, 224, 320, 448)  # longest sides (pixels) the teacher stylises each photo at
CROP_PX = 96
BATCH = 16
STEPS = 4000
LR = 2e-3
VAL_PHOTOS = 8
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def fit_side(rgb: np.ndarray, longest: int) -> np.ndarray:
    """``rgb`` resized so its longest side is ``longest``, both sides multiples of SIDE_MULTIPLE."""
    h, w = rgb.shape[:2]
    scale = longest / max(h, w)
    size = tuple(max(SIDE_MULTIPLE, int(round(n * scale / SIDE_MULTIPLE)) * SIDE_MULTIPLE) for n in (w, h))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def load_photos(folder: Path) -> list[tuple[str, np.ndarray]]:
    """``(name, RGB uint8)`` for every readable image in ``folder``, sorted by name."""
    photos = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in PHOTO_SUFFIXES:
            bgr = cv2.imread(str(path))
            if bgr is not None:
                photos.append((path.name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    return photos


class Teacher:
    """A full style and its outputs, cached in ``cache`` under the style's sha256.

    The style is resolved once; its engine is loaded only when an output is not cached yet.
    """

    def __init__(self, style: str, cache: Path):
        path, self.meta = weights.resolve(style)
        self.style = style
        self.folder = cache / f"teacher-{(self.meta.get('sha256') or weights.sha256_of(path))[:16]}"
        self._engine: Engine | None = None

    def pairs(self, photos: list[tuple[str, np.ndarray]],
              sides: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(photo, teacher output) for each photo at each longest side in ``sides``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        pairs = []
        for name, rgb in photos:
            for side in sides:
                x = fit_side(rgb, side)
                out_path = self.folder / f"{Path(name).stem}_{side}.png"
                y = cv2.imread(str(out_path)) if out_path.exists() else None
                if y is None or y.shape != x.shape:
                    self._engine = self._engine or Engine(self.style, max_side=0)
                    y = self._engine(x).copy()
                    cv2.imwrite(str(out_path), cv2.cvtColor(y, cv2.COLOR_RGB2BGR))
                else:
                    y = cv2.cvtColor(y, cv2.COLOR_BGR2RGB)
                pairs.append((x, y))
        return pairs


@torch.inference_mode()
def psnr_vs_teacher(model: torch.nn.Module, pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean PSNR (dB) of ``model``'s fp32 outputs against the teacher's on the given pairs."""
    model.eval()
    return float(np.mean([psnr(to_image(model(to_tensor(x).unsqueeze(0))[0].cpu()), y) for x, y in pairs]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stream.distill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="paprika", help="full style to distil (default: %(default)s)")
    p.add_argument("--photos", type=Path, required=True, help="folder of photos (any content)")
    p.add_argument("--name", help="output style name (default: TEACHER-lite)")
    p.add_argument("--width", type=float, default=LITE_WIDTH, help="channel width multiplier (default: %(default)s)")
    p.add_argument("--blocks", type=int, default=LITE_BLOCKS, help="inverted residual blocks (default: %(default)s)")
    p.add_argument("--max-side", type=int, default=LITE_MAX_SIDE,
                   help="recommended inference cap written to the sidecar, pixels (default: %(default)s)")
    p.add_argument("--steps", type=int, default=STEPS, help="total optimiser steps (default: %(default)s)")
    p.add_argument("--lr", type=float, default=LR, help="peak Adam learning rate (default: %(default)s)")
    p.add_argument("--crop", type=int, default=CROP_PX,
                   help="crop side, pixels; 0 trains on whole images, normalised as at inference "
                        "(default: %(default)s)")
    p.add_argument("--batch", type=int, default=BATCH, help="crops per step (default: %(default)s)")
    p.add_argument("--val", type=int, default=VAL_PHOTOS, help="photos held back (default: %(default)s)")
    p.add_argument("--cache", type=Path, default=None, help=f"checkpoint folder (default: {DEFAULT_CACHE}/NAME)")
    p.add_argument("--out", type=Path, default=Path("weights"), help="where the style is exported")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--export", action="store_true", help="only export the latest checkpoint")
    args = p.parse_args(argv)
    for flag, value in (("--val", args.val), ("--max-side", args.max_side), ("--steps", args.steps),
                        ("--batch", args.batch)):
        if value < 1:
            p.error(f"{flag} must be >= 1, not {value}")
    if args.crop < 0:
        p.error(f"--crop must be >= 0, not {args.crop}")
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.name or f"{Path(args.teacher).stem}-lite"
    photos = load_photos(args.photos)
    if len(photos) <= args.val:
        p.error(f"--photos {args.photos}: {len(photos)} readable photos, need more than --val {args.val}")
    cache = args.cache or DEFAULT_CACHE / name
    teacher = Teacher(args.teacher, cache)
    train_photos, val_photos = photos[: -args.val], photos[-args.val:]
    val_pairs = teacher.pairs(val_photos, (args.max_side,))

    device, amp_dtype = pick_device()
    run = Run(Generator(args.width, args.blocks), cache, device)
    if not args.export:
        pairs = [(x, y) for x, y in teacher.pairs(train_photos, LEVELS)
                 if min(x.shape[:2]) >= args.crop]
        sampler = CropSampler([(to_tensor(x), to_tensor(y)) for x, y in pairs], run.rng, args.crop)
        run.fit(sampler, steps=args.steps, lr=args.lr, batch=args.batch, amp_dtype=amp_dtype,
                loss_fn=lambda out, y: style_loss(out, y, EDGE_WEIGHT, 0.0),
                validate_fn=lambda m: psnr_vs_teacher(m, val_pairs))

    ema = run.ema.cpu().float()
    quality = {"teacher": args.teacher, "teacher_sha256": teacher.meta.get("sha256", ""),
               "psnr_vs_teacher": round(psnr_vs_teacher(ema, val_pairs), 2),
               "val_photos": [n for n, _ in val_photos], "resolution": f"longest side {args.max_side} px"}
    recipe = {"crop": args.crop, "batch": args.batch, "lr": args.lr, "edge": EDGE_WEIGHT,
              "ema_decay": EMA_DECAY, "levels": list(LEVELS), "train_photos": len(train_photos)}
    path = weights.export_style(ema, args.out, name, source=f"distilled from {args.teacher} on {args.photos.name}/",
                                license=teacher.meta.get("license", "as the teacher's"),
                                training_steps=run.step, quality=quality, recipe=recipe,
                                recommended_max_side=args.max_side)
    print(json.dumps({"exported": str(path), "steps": run.step, **quality}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
