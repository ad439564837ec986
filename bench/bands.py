"""Where a distilled style's remaining error against its teacher lies: fine strokes or broad tones.

    python bench/bands.py [--styles shinkai,hayao-v3] [--teachers ../shared/teachers] [--photos-root ../shared/media]

On the held-back photos its sidecar lists, at its sidecar's resolution and in fp32, the error
``student - teacher`` is split by a Gaussian blur of ``--sigma`` pixels into a *fine* part (what the blur
removes: strokes, fur, grain) and a *broad* part (the blurred error: tones, colour, shading). Per style
one JSON line:

- ``psnr``: from the mean squared error over all photos (so a little below the sidecar's mean of
  per-photo PSNRs);
- ``fine_share``: the fine part's share of that squared error; ``psnr_without_fine`` /
  ``psnr_without_broad``: what the style would score with that part of its error gone (a ceiling for
  work on tones alone, or on strokes alone);
- ``detail_photo`` / ``detail_teacher`` / ``detail_student``: the mean square of each picture's own
  fine part (0-255 levels squared): how much fine texture each has. A teacher that paints strokes has
  more than the photo; a student below its teacher paints fewer of them;
- ``photo_texture_r2``: the share of the error's fine part that the photo's fine part explains
  (least squares): near 0 means the student is not merely keeping the photo's texture.
- ``psnr_colour_fit``: what the style would score with each photo's output passed through the one
  affine colour map (3x3 matrix and offset, least squares over that photo's pixels) that brings it
  closest to the teacher's: the ceiling of any whole-picture colour correction, such as a branch that
  sets the output's colour balance from the whole picture.

Needs onnxruntime (``animestream[onnx]``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from flicker import _teachers  # bench/flicker.py, beside this script
from stream import weights
from stream.distill import fit_side
from stream.engine import Engine
from stream.onnxgen import OnnxGenerator, OnnxIO
from stream.sources import read_image

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def fine(a: np.ndarray, sigma: float) -> np.ndarray:
    """What a Gaussian blur of ``sigma`` pixels removes from the float picture ``a``."""
    return a - cv2.GaussianBlur(a, (0, 0), sigma)


def _db(mse: float) -> float:
    return round(10 * float(np.log10(255.0 ** 2 / mse)), 2)


def colour_fit(out: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``out`` (H x W x 3 float) through the affine colour map that brings it closest to ``target`` in
    squared error: ``[r g b 1] @ M`` with M (4 x 3) from least squares over all pixels."""
    a = np.concatenate([out.reshape(-1, 3), np.ones((out.shape[0] * out.shape[1], 1), out.dtype)], 1)
    m, *_ = np.linalg.lstsq(a.astype(np.float64), target.reshape(-1, 3).astype(np.float64), rcond=None)
    return (a @ m).reshape(out.shape)


def bands(style: weights.Style, entry: dict, teachers: Path, photos_root: Path, sigma: float,
          threads: int) -> dict:
    """The JSON row described in the module docstring for one style."""
    q = style.meta["quality"]
    side = style.eval_side
    teacher = OnnxGenerator(teachers / entry["file"], OnnxIO.from_manifest(entry), threads=threads)
    student = Engine(style, max_side=side, precision="fp32", device="cpu", threads=threads)
    sums = dict.fromkeys(("mse", "fine", "broad", "detail_photo", "detail_teacher", "detail_student", "r2",
                          "colour_fit"), 0.0)
    names = q["val_photos"]
    for name in names:
        x = fit_side(read_image(photos_root / name), side)
        y = teacher.stylise(x).astype(np.float32)
        out = student(x).astype(np.float32)
        err = out - y
        err_fine, photo_fine = fine(err, sigma), fine(x.astype(np.float32), sigma)
        sums["mse"] += float(np.mean(err ** 2))
        sums["fine"] += float(np.mean(err_fine ** 2))
        sums["broad"] += float(np.mean((err - err_fine) ** 2))
        sums["detail_photo"] += float(np.mean(photo_fine ** 2))
        sums["detail_teacher"] += float(np.mean(fine(y, sigma) ** 2))
        sums["detail_student"] += float(np.mean(fine(out, sigma) ** 2))
        e, p = err_fine.ravel().astype(np.float64), photo_fine.ravel().astype(np.float64)
        sums["r2"] += float((e @ p) ** 2 / (p @ p) / (e @ e))
        sums["colour_fit"] += float(np.mean((colour_fit(out, y) - y) ** 2))
    m = {k: v / len(names) for k, v in sums.items()}
    return {"style": style.name, "teacher": entry["name"], "photos": len(names), "resolution": side, "sigma": sigma,
            "psnr": _db(m["mse"]), "fine_share": round(m["fine"] / m["mse"], 3),
            "psnr_without_fine": _db(m["broad"]), "psnr_without_broad": _db(m["fine"]),
            "detail_photo": round(m["detail_photo"], 1), "detail_teacher": round(m["detail_teacher"], 1),
            "detail_student": round(m["detail_student"], 1), "photo_texture_r2": round(m["r2"], 3),
            "psnr_colour_fit": _db(m["colour_fit"])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--styles", default="shinkai,hayao-v3", help="comma-separated styles (default: %(default)s)")
    p.add_argument("--teachers", type=Path, default=SHARED / "teachers")
    p.add_argument("--photos-root", type=Path, default=SHARED / "media")
    p.add_argument("--sigma", type=float, default=2.0, help="blur, pixels, that splits fine from broad "
                   "(default: %(default)s)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    entries = _teachers(args.teachers)
    for name in args.styles.split(","):
        style = weights.resolve(name)
        entry = entries[style.meta["quality"]["teacher"]]
        print(json.dumps(bands(style, entry, args.teachers, args.photos_root, args.sigma, args.threads)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
