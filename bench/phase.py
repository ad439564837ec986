"""How much of a teacher's output depends on where the picture starts, modulo its downsampling: the teacher
run on a photo and on the same photo with its first ``k`` rows and columns cut off, compared on the region
both cover. A generator that downsamples by 4 paints the same content alike at shifts of 0, 4, 8, but not
at 1, 2, 3: its strided convolutions sample the picture at another phase. A student trained on tiles cut at
any offset from the whole picture's output (``distill --labels photo``) is then asked to paint, for the
same content, whatever each phase gave; scored on whole pictures (phase 0), it can only learn their average.

    python bench/phase.py [--teachers ../shared/teachers] [--teacher animeganv2_hayao] [--photos 4]
                          [--side 512] [--shifts 1,2,3,4,8] [--margin 32]

Each of the first ``--photos`` photos of ``../shared/media/photos`` (sorted by name) is scaled so its longest
side is ``--side`` pixels (both sides multiples of 4, as the engine runs it). One JSON line per photo and
shift with the PSNR (dB, 0-255) of the shifted picture's output against the same region of the unshifted
one's, ``--margin`` pixels from every border left out (where the borders, not the phase, differ), then one
line per shift with the mean over the photos.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream.distill import fit_side, load_teacher  # noqa: E402
from stream.quality import psnr  # noqa: E402

SHARED = ROOT.parent / "shared"


def shifted_psnr(teacher, rgb: np.ndarray, whole: np.ndarray, k: int, margin: int) -> float:
    """PSNR of the teacher's output for ``rgb`` without its first ``k`` rows and columns against ``whole``
    (its output for all of ``rgb``), on the region both cover, ``margin`` px from every border left out."""
    out = teacher(np.ascontiguousarray(rgb[k:, k:]))
    ref = whole[k:, k:]
    m = margin
    return round(psnr(out[m:-m, m:-m], ref[m:-m, m:-m]), 2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teachers", type=Path, default=SHARED / "teachers")
    p.add_argument("--teacher", default="animeganv2_hayao")
    p.add_argument("--photos", type=int, default=4)
    p.add_argument("--side", type=int, default=512)
    p.add_argument("--shifts", default="1,2,3,4,8")
    p.add_argument("--margin", type=int, default=32)
    args = p.parse_args(argv)
    if not (args.teachers / "teachers.json").exists():
        print(f"no teachers at {args.teachers}", file=sys.stderr)
        return 2
    shifts = [int(s) for s in args.shifts.split(",")]
    teacher = load_teacher(args.teacher, args.teachers, None, 0)
    paths = sorted((SHARED / "media" / "photos").glob("*.jpg"))[:args.photos]
    per_shift: dict[int, list[float]] = {k: [] for k in shifts}
    for path in paths:
        rgb = fit_side(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), args.side)
        whole = teacher(rgb)
        for k in shifts:
            db = shifted_psnr(teacher, rgb, whole, k, args.margin)
            per_shift[k].append(db)
            print(json.dumps({"teacher": teacher.name, "photo": path.name, "shift": k, "psnr": db}), flush=True)
    for k in shifts:
        print(json.dumps({"teacher": teacher.name, "shift": k, "photos": len(paths),
                          "mean_psnr": round(float(np.mean(per_shift[k])), 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
