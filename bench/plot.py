"""Frames per second against the inference cap, full and lite styles: docs/fps_vs_max_side.png.

    python bench/plot.py [--styles shinkai,shinkai-lite] [--caps 128,160,...] [--png PATH]

For each style and cap, the engine stylises a 640x480 frame (resize in, model, resize out) and the
median of --repeats calls after a warm-up gives frames per second. One JSON line per point; the
plot needs matplotlib (``pip install -e .[bench]``), the numbers do not.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench import machine  # bench/bench.py, beside this script
from stream.engine import Engine

ROOT = Path(__file__).resolve().parent.parent

FRAME_SIZE = (640, 480)  # pixels, a webcam frame
CAPS = (128, 160, 192, 256, 320, 384, 512)
REALTIME_FPS = 24


def measure(style: str, cap: int, repeats: int) -> float:
    engine = Engine(style, max_side=cap)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (FRAME_SIZE[1], FRAME_SIZE[0], 3), dtype=np.uint8)
    engine(frame)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        engine(frame)
        times.append(time.perf_counter() - t0)
    return 1.0 / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--styles", default="shinkai,shinkai-lite")
    p.add_argument("--caps", default=",".join(map(str, CAPS)))
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--png", type=Path, default=ROOT / "docs" / "fps_vs_max_side.png")
    args = p.parse_args(argv)
    caps = [int(c) for c in args.caps.split(",")]
    curves: dict[str, list[float]] = {}
    for style in args.styles.split(","):
        curves[style] = []
        for cap in caps:
            fps = measure(style, cap, args.repeats)
            curves[style].append(fps)
            print(json.dumps({"style": style, "max_side": cap, "frame": "x".join(map(str, FRAME_SIZE)),
                              "fps": round(fps, 2)}), flush=True)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("matplotlib is not installed: numbers only, no plot", file=sys.stderr)
        return 0
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for style, fps in curves.items():
        ax.plot(caps, fps, marker="o", label=style)
    ax.axhline(REALTIME_FPS, color="grey", linestyle="--", linewidth=1)
    ax.text(caps[-1], REALTIME_FPS * 1.08, f"{REALTIME_FPS} fps", ha="right", color="grey")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("--max-side (pixels, longest side at inference)")
    ax.set_ylabel("frames per second (engine, 640x480 in)")
    ax.set_title(f"animestream on {machine()}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.png)
    print(json.dumps({"plot": str(args.png)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
