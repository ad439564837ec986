"""Each distilled style next to its teacher: quality on the held-back photos and speed, in one run.

    python bench/teachers.py [--teachers ../shared/teachers] [--photos-root ../shared/media] [--styles hayao,...]
                             [--precision auto|fp32|bf16|int8] [--record]

For every style whose sidecar names a teacher of ``teachers.json`` (``quality.teacher``), it prints
one JSON line with:

- ``psnr``/``ssim``: the student's output against the teacher's on the held-back photos the sidecar
  lists (never trained on), both run at the sidecar's resolution (the longest side, 512 for full styles,
  the cap for lites); ``psnr_fp32`` is the float model (what the sidecar records), ``psnr`` the style at
  ``--precision`` (default: the one ``auto`` picks on this CPU, which may be a narrower variant's:
  ``network`` names the one that ran), ``psnr_photo`` the untouched photo;
- ``psnr_int8``/``ssim_int8`` (calibrated styles): the INT8 path itself (``precision="int8"``), whatever
  ``auto`` picks on this CPU class; ``psnr_faces``/``psnr_faces_int8``: the same on the held-back
  faces alone, where the sidecar lists them (``quality.face_photos``); ``--record`` stores the INT8
  figures in the style's calibration (:func:`stream.weights.record_int8_quality`), which is what lets ``auto`` choose INT8 for it;
- ``psnr_strokes``: the same PSNR on each photo's *strokes*, the 5% of its pixels the teacher moves
  furthest from the photo (stream.quality.stroke_mask: a portrait teacher's eyes and brows, which a
  whole-picture PSNR barely sees), beside ``psnr_strokes_photo``, the untouched photo's there (what
  painting none of them scores); ``psnr_faces_strokes`` on the faces alone;
- ``cpu``: the CPU class torch's kernels run as (``ONEDNN_MAX_CPU_ISA``/``ATEN_CPU_CAPABILITY`` limit it);
- ``student_ms``/``teacher_ms``: model time per 512x512 frame, the student at ``--precision`` in
  the engine's own path, the teacher in onnxruntime (``session.run`` only) with as many threads, which
  do not spin between runs (stream.onnxgen: they did, and slowed the student timed next); the two
  are timed in alternation, ``--repeat`` rounds after a warm-up, and the medians reported, so that a
  shared machine slows both alike. ``faster`` is teacher_ms / student_ms. ``ONEDNN_MAX_CPU_ISA`` and
  ``ATEN_CPU_CAPABILITY`` limit the student only: onnxruntime picks its kernels from what the CPU has and
  no setting limits them, so on a bigger CPU limited to AVX2 the teacher still runs its AVX-512 kernels
  and ``faster`` is lower than a real AVX2 CPU would give.

A last line, ``{"summary": ...}``, lists every style's margin. Needs onnxruntime (``animestream[onnx]``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from flicker import _teachers  # bench/flicker.py, beside this script
from int8 import cpu_class  # bench/int8.py, beside this script
from stream import weights
from stream.distill import fit_side
from stream.engine import Engine
from stream.onnxgen import OnnxGenerator, OnnxIO
from stream.quality import psnr, psnr_where, ssim, stroke_mask
from stream.sources import read_image

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SPEED_SIDE = 512  # pixels: frames are SPEED_SIDE x SPEED_SIDE for the timings


def _time(fn, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def bench_style(style: weights.Style, entry: dict, teachers: Path, photos_root: Path, *, repeat: int,
                threads: int, limit: int, precision: str = "auto") -> dict:
    q = style.meta["quality"]
    side = style.eval_side
    teacher = OnnxGenerator(teachers / entry["file"], OnnxIO.from_manifest(entry), threads=threads)
    student = Engine(style, max_side=side, precision=precision, device="cpu", threads=threads)
    fp32 = Engine(style, max_side=side, precision="fp32", device="cpu", threads=threads)
    int8 = None
    if style.calibrated:  # the INT8 path explicitly, whatever auto picks on this CPU class
        own = student.precision == "int8" and student.net.name == style.name  # not a narrower variant's INT8
        int8 = student if own else Engine(style, max_side=side, precision="int8", device="cpu", threads=threads)
    names = q["val_photos"][:limit] if limit else q["val_photos"]
    rows, int8_rows = [], []
    for name in names:
        x = fit_side(read_image(photos_root / name), side)
        y = teacher.stylise(x)
        out = student(x)
        strokes = stroke_mask(x, y)
        rows.append((psnr(out, y), psnr(fp32(x), y), ssim(out, y), psnr(x, y), psnr_where(out, y, strokes),
                     psnr_where(x, y, strokes)))
        if int8 is not None:
            out = out if int8 is student else int8(x)
            int8_rows.append((psnr(out, y), ssim(out, y)))
    psnr_default, psnr_fp32, ssim_default, psnr_photo, psnr_strokes, psnr_strokes_photo = (
        float(np.mean(c)) for c in zip(*rows))

    frame = (np.random.default_rng(0).integers(0, 256, (SPEED_SIDE, SPEED_SIDE, 3))).astype(np.uint8)
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 127.5 - 1
    fast = Engine(style, max_side=SPEED_SIDE, precision=precision, device="cpu", threads=threads)
    fast(frame), teacher(x)  # warm-up: buffers, oneDNN primitives, onnxruntime's arenas
    student_ms, teacher_ms = [], []
    for _ in range(repeat):  # alternate, so that load from elsewhere hits both
        student_ms += _time(lambda: fast(frame), 1)
        teacher_ms += _time(lambda: teacher(x), 1)
    s_ms, t_ms = statistics.median(student_ms), statistics.median(teacher_ms)
    row = {"style": style.name, "teacher": entry["name"], "precision": fast.precision, "network": fast.net.name,
           "cpu": cpu_class(), "resolution": side, "photos": len(rows), "psnr": round(psnr_default, 2),
           "psnr_fp32": round(psnr_fp32, 2),
           "ssim": round(ssim_default, 4), "psnr_photo": round(psnr_photo, 2),
           "psnr_strokes": round(psnr_strokes, 2), "psnr_strokes_photo": round(psnr_strokes_photo, 2),
           "sidecar_psnr": q["psnr_vs_teacher"], "student_ms": round(s_ms, 1), "teacher_ms": round(t_ms, 1),
           "faster": round(t_ms / s_ms, 2), "threads": threads}
    if int8_rows:
        row["psnr_int8"], row["ssim_int8"] = (float(np.mean(c)) for c in zip(*int8_rows))
    face_photos = set(q.get("face_photos", ()))
    faces = [i for i, name in enumerate(names) if name in face_photos]
    if faces:  # a portrait style is judged on these
        row["faces"] = len(faces)
        row["psnr_faces"] = round(float(np.mean([rows[i][0] for i in faces])), 2)
        row["psnr_faces_strokes"] = round(float(np.mean([rows[i][4] for i in faces])), 2)
        row["psnr_faces_strokes_photo"] = round(float(np.mean([rows[i][5] for i in faces])), 2)
        if int8_rows:
            row["psnr_faces_int8"] = round(float(np.mean([int8_rows[i][0] for i in faces])), 2)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teachers", type=Path, default=SHARED / "teachers")
    p.add_argument("--photos-root", type=Path, default=SHARED / "media",
                   help="folder the sidecars' photo names (FOLDER/FILE) are relative to")
    p.add_argument("--styles", default="", help="comma-separated styles (default: every style with a teacher)")
    p.add_argument("--repeat", type=int, default=7, help="timed rounds per model (default: %(default)s)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="threads for both (default: all)")
    p.add_argument("--limit", type=int, default=0, help="score only the first N held-back photos (0: all)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "int8"), default="auto",
                   help="the student's precision for psnr and student_ms (default: %(default)s)")
    p.add_argument("--record", action="store_true",
                   help="store psnr_int8/ssim_int8 in each calibrated style's .ranges (needs every held-back photo)")
    args = p.parse_args(argv)
    if args.record and args.limit:
        print("error: --record measures on every held-back photo; drop --limit", file=sys.stderr)
        return 1
    if not (args.teachers / "teachers.json").exists():
        print(f"error: {args.teachers}/teachers.json not found (--teachers)", file=sys.stderr)
        return 1
    entries = _teachers(args.teachers)
    wanted = [s for s in args.styles.split(",") if s]
    rows = []
    for listed in weights.list_styles():
        teacher = listed.meta.get("quality", {}).get("teacher")
        if teacher not in entries or (wanted and listed.name not in wanted):
            continue
        style = weights.resolve(listed)
        if args.precision == "int8" and not style.calibrated:
            continue
        row = bench_style(style, entries[teacher], args.teachers, args.photos_root, repeat=args.repeat,
                          threads=args.threads, limit=args.limit, precision=args.precision)
        if "psnr_int8" in row:
            if args.record:
                weights.record_int8_quality(style, row["psnr_int8"], row["ssim_int8"])
                row["recorded"] = str(style.ranges_path.name)
            row["psnr_int8"], row["ssim_int8"] = round(row["psnr_int8"], 2), round(row["ssim_int8"], 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"summary": {r["style"]: {"psnr": r["psnr"], "faster": r["faster"]} for r in rows}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
