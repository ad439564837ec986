"""How much of a teacher's output depends on where the picture starts, modulo its downsampling: the teacher
run on a photo and on the same photo with its first ``k`` rows and columns cut off, compared on the region
both cover. A generator that downsamples by 4 paints the same content alike at shifts of 0, 4, 8, but not
at 1, 2, 3: its strided convolutions sample the picture at another phase. A student trained on tiles cut at
any offset from the whole picture's output (``distill --labels photo``) is then asked to paint, for the
same content, whatever each phase gave; scored on whole pictures (phase 0), it can only learn their average.

    python bench/phase.py [--teachers ../shared/teachers] [--teacher animeganv2_hayao] [--photos 4]
                          [--side 512] [--shifts 1,2,3,4,8] [--margin 32]
                          [--average 4 [--step 1] [--styles hayao,...]]

Each of the first ``--photos`` photos of ``../shared/media/photos`` (sorted by name) is scaled so its longest
side is ``--side`` pixels (both sides multiples of 4, as the engine runs it). One JSON line per photo and
shift with the PSNR (dB, 0-255) of the shifted picture's output against the same region of the unshifted
one's, ``--margin`` pixels from every border left out (where the borders, not the phase, differ), then one
line per shift with the mean over the photos.

``--average P`` also runs the teacher at every shift (dy, dx) in [0, P)², places each output back where its
picture started and averages them: the *phase average*, what a student that learned every phase's painting
as one can at best paint. Per photo (then their mean): the teacher's PSNR against it, and for each of
``--styles`` (run whole, padded at the bottom and right to a multiple of 4, as the teacher pads) its PSNR
against the teacher and against the phase average. Squared errors add where the two parts are
independent, so ``phase_share`` = (the student's squared error against the teacher minus against the
average) / the former estimates how much of the student's error is the teacher's phase-specific painting.

``--step S`` averages only the shifts that are multiples of S in [0, P)²: with ``--average 8 --step 4``,
what a network that downsamples by 4 cannot tell apart in a teacher that downsamples by 8 (the shifts
(0, 0), (0, 4), (4, 0), (4, 4) look alike to it), so the teacher's PSNR against that average is the
closest such a student can come even trained at the teacher's phase.
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

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from stream import weights  # noqa: E402
from stream.distill import Teacher, fit_side, load_teacher  # noqa: E402
from stream.quality import psnr  # noqa: E402
from stream.train import to_image, to_tensor  # noqa: E402

SHARED = ROOT.parent / "shared"


def shifted_psnr(teacher, rgb: np.ndarray, whole: np.ndarray, k: int, margin: int) -> float:
    """PSNR of the teacher's output for ``rgb`` without its first ``k`` rows and columns against ``whole``
    (its output for all of ``rgb``), on the region both cover, ``margin`` px from every border left out."""
    out = teacher(np.ascontiguousarray(rgb[k:, k:]))
    ref = whole[k:, k:]
    m = margin
    return round(psnr(out[m:-m, m:-m], ref[m:-m, m:-m]), 2)


def phase_average(teacher, rgb: np.ndarray, period: int, step: int = 1) -> np.ndarray:
    """The mean (float64, H x W x 3) of the teacher's outputs for ``rgb`` started at every (dy, dx) in
    [0, ``period``)² that are multiples of ``step``, each put back where its picture started; the first
    ``period`` - 1 rows and columns average fewer outputs (leave them out)."""
    h, w = rgb.shape[:2]
    total, count = np.zeros((h, w, 3)), np.zeros((h, w, 1))
    for dy in range(0, period, step):
        for dx in range(0, period, step):
            total[dy:, dx:] += teacher(np.ascontiguousarray(rgb[dy:, dx:]))
            count[dy:, dx:] += 1
    return total / count


def padded_runner(style: str):
    """``rgb -> rgb`` of a style's fp32 generator on the picture as it is, padded (reflect) at the bottom and
    right to a multiple of 4 and cut back, as an ONNX teacher is run: no resize."""
    model = weights.eager_generator(weights.resolve(style)).float().eval()

    def run(rgb: np.ndarray) -> np.ndarray:
        x = to_tensor(np.ascontiguousarray(rgb))[None]
        h, w = x.shape[2:]
        with torch.no_grad():
            return to_image(model(F.pad(x, (0, -w % 4, 0, -h % 4), mode="reflect"))[0, :, :h, :w])
    return run


def split_rows(teacher, name: str, rgb: np.ndarray, whole: np.ndarray, period: int, styles: list[str],
               runners: dict, margin: int, step: int = 1) -> list[dict]:
    """One row for the teacher against its phase average (over the shifts that are multiples of ``step``),
    one per style (see the module's docstring); ``whole`` is the teacher's output for ``rgb``."""
    m = max(margin, period)
    inner = (slice(m, -m), slice(m, -m))
    whole = whole[inner].astype(np.float64)
    avg = phase_average(teacher, rgb, period, step)[inner]
    mse = lambda a, b: float(np.mean((a - b) ** 2))  # noqa: E731
    db = lambda e: round(10 * np.log10(255.0 ** 2 / e), 2) if e else float("inf")  # noqa: E731
    rows = [{"teacher": teacher.name, "photo": name, "period": period, "step": step,
             "teacher_vs_average": db(mse(whole, avg))}]
    for style in styles:
        out = runners[style](rgb)[inner].astype(np.float64)
        e_t, e_a = mse(out, whole), mse(out, avg)
        rows.append({"teacher": teacher.name, "photo": name, "style": style, "vs_teacher": db(e_t),
                     "vs_average": db(e_a), "phase_share": round((e_t - e_a) / e_t, 3) if e_t else 0.0})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teachers", type=Path, default=SHARED / "teachers")
    p.add_argument("--teacher", default="animeganv2_hayao",
                   help="a teacher of --teachers, or one of our styles (run as --styles are)")
    p.add_argument("--photos", type=int, default=4)
    p.add_argument("--side", type=int, default=512)
    p.add_argument("--shifts", default="1,2,3,4,8")
    p.add_argument("--margin", type=int, default=32)
    p.add_argument("--average", type=int, default=0, metavar="P",
                   help="also average the teacher over every shift in [0, P)^2 (its period) and split errors")
    p.add_argument("--step", type=int, default=1, metavar="S",
                   help="average only the shifts that are multiples of S (default: %(default)s, every shift)")
    p.add_argument("--styles", default="", help="comma-separated styles to split against that average")
    args = p.parse_args(argv)
    if args.step < 1 or (args.average and args.average % args.step):
        p.error(f"--step {args.step}: must be at least 1 and divide --average {args.average}")
    if not (args.teachers / "teachers.json").exists():
        print(f"no teachers at {args.teachers}", file=sys.stderr)
        return 2
    shifts = [int(s) for s in args.shifts.split(",")]
    listed = {t["name"] for t in json.loads((args.teachers / "teachers.json").read_text())["teachers"]}
    teacher = (load_teacher(args.teacher, args.teachers, None, 0) if args.teacher in listed
               else Teacher(args.teacher, "", "", padded_runner(args.teacher), period=4))  # a style of ours
    paths = sorted((SHARED / "media" / "photos").glob("*.jpg"))[:args.photos]
    styles = [s for s in args.styles.split(",") if s]
    runners = {style: padded_runner(style) for style in styles}
    per_shift: dict[int, list[float]] = {k: [] for k in shifts}
    split: list[dict] = []
    for path in paths:
        rgb = fit_side(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), args.side)
        whole = teacher(rgb)
        for k in shifts:
            db = shifted_psnr(teacher, rgb, whole, k, args.margin)
            per_shift[k].append(db)
            print(json.dumps({"teacher": teacher.name, "photo": path.name, "shift": k, "psnr": db}), flush=True)
        if args.average:
            for row in split_rows(teacher, path.name, rgb, whole, args.average, styles, runners, args.margin,
                                  args.step):
                split.append(row)
                print(json.dumps(row), flush=True)
    for k in shifts:
        print(json.dumps({"teacher": teacher.name, "shift": k, "photos": len(paths),
                          "mean_psnr": round(float(np.mean(per_shift[k])), 2)}), flush=True)
    if split:
        for style in [None, *styles]:
            rows = [r for r in split if r.get("style") == style]
            keys = ["teacher_vs_average"] if style is None else ["vs_teacher", "vs_average", "phase_share"]
            print(json.dumps({"teacher": teacher.name, **({"style": style} if style else {}), "period": args.average,
                              "step": args.step,
                              "photos": len(rows), **{f"mean_{k}": round(float(np.mean([r[k] for r in rows])), 3)
                                                      for k in keys}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
