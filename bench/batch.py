"""What Ray costs: the same clips converted one after another with the plain CLI, and by
``animestream batch --ray local`` with one and with two workers, side by side in one run.

    python bench/batch.py [--clips 12] [--seconds 4] [--style shinkai-lite] [--max-side 160]

Prints one JSON line per configuration (wall seconds, frames per second over all clips) and a last line
with Ray's overhead at one worker against the sequential CLI: (batch - sequential) / sequential, which
should be at most 10%. The sequential runs start one process per clip, as a shell loop would; the batch
starts Ray and each worker's engine once. Clips are made here: 640x360 at 24 fps, panning across the
shipped sample's photo, with sound.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "stream", *args, "-q"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main(argv: list[str] | None = None) -> int:
    from gpu import make_clip

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=12)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--style", default="shinkai-lite")
    p.add_argument("--max-side", type=int, default=160)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    work = args.out or Path(tempfile.mkdtemp(prefix="animestream-batch-bench-"))
    clips = work / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    frames = int(args.seconds * 24)
    for i in range(args.clips):
        make_clip(clips / f"clip{i:02d}.mp4", 640, 360, frames, fps=24)
    total = frames * args.clips
    engine = ["--style", args.style, "--max-side", str(args.max_side)]
    cores = os.cpu_count() or 1
    rows = {}

    out = work / "sequential"
    out.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    for clip in sorted(clips.iterdir()):
        _cli(str(clip), str(out / clip.name), *engine)
    rows["sequential"] = time.perf_counter() - t0

    for workers in (1, 2):
        t0 = time.perf_counter()
        _cli("batch", str(clips), "--out", str(work / f"batch{workers}"), "--workers", str(workers),
             "--cpus-per-worker", str(max(1, cores // workers)), *engine)
        rows[f"batch_workers_{workers}"] = time.perf_counter() - t0

    for name, seconds in rows.items():
        print(json.dumps({"config": name, "clips": args.clips, "frames": total, "wall_s": round(seconds, 1),
                          "fps": round(total / seconds, 2)}), flush=True)
    overhead = rows["batch_workers_1"] / rows["sequential"] - 1
    print(json.dumps({"ray_overhead_1_worker": round(overhead, 3), "goal": "<= 0.10", "met": overhead <= 0.10,
                      "cores": cores}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
