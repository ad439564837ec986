"""What ``--deflicker`` costs per frame, with and without following the motion, at the sizes jobs run.

    python bench/deflicker.py [--video ../shared/media/video/street_dancers_1280x720.mp4] [--frames 30] \
        [--sizes 640x480,1280x720,1920x1080] [--threads 2]

The filter alone (stream/deflicker.py; the "style" is the frame itself, so no model runs) on the clip's
frames scaled to each size. One JSON line per size and mode: ``ms_per_frame`` (mean over the frames after
the first, which allocates the buffers), ``ms_p95``, and ``moves`` (the mean |out - in|, a check that the
filter ran). ``motion`` is the default (DIS flow on a copy at most 256 px long, the previous result warped
by it, the floor following the input's noise); ``fixed`` the same with ``adaptive=False``; ``still`` is
``motion=False``. A last line gives the wall time. OpenCV's threads are set to
``--threads`` (the filter runs beside the model, which has the rest).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from flicker import _frames  # bench/
from stream.deflicker import Deflicker

ROOT = Path(__file__).resolve().parent.parent
VIDEO = ROOT.parent / "shared" / "media" / "video" / "street_dancers_1280x720.mp4"


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    return int(w), int(h)


MODES = (("motion", {}), ("fixed", {"adaptive": False}), ("still", {"motion": False}))  # Deflicker keywords


def time_filter(frames: list[np.ndarray], **keywords) -> dict:
    """Run the filter (``keywords``: Deflicker's) over ``frames`` (an identity style) and time each call
    after the first."""
    d = Deflicker(lambda x: x, **keywords)
    times, moved = [], []
    for i, f in enumerate(frames):
        t0 = time.perf_counter()
        out = d(f)
        if i:
            times.append(1000 * (time.perf_counter() - t0))
            moved.append(float(cv2.absdiff(out, f).mean()))
    return {"ms_per_frame": round(float(np.mean(times)), 2), "ms_p95": round(float(np.percentile(times, 95)), 2),
            "moves": round(float(np.mean(moved)), 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", type=Path, default=VIDEO, help="clip to take frames from")
    p.add_argument("--frames", type=int, default=30, help="frames per size (default: %(default)s)")
    p.add_argument("--sizes", default="640x480,1280x720,1920x1080", help="comma-separated WxH")
    p.add_argument("--threads", type=int, default=2, help="OpenCV threads (default: %(default)s)")
    args = p.parse_args(argv)
    if not args.video.is_file():
        print(f"error: {args.video}: no such clip (--video)", file=sys.stderr)
        return 1
    if args.frames < 2:
        p.error("--frames must be >= 2")
    cv2.setNumThreads(args.threads)
    t0 = time.perf_counter()
    clip = _frames(args.video, args.frames)
    for size in map(_size, args.sizes.split(",")):
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in clip]
        for mode, keywords in MODES:
            print(json.dumps({"size": f"{size[0]}x{size[1]}", "mode": mode, "frames": len(frames),
                              **time_filter(frames, **keywords)}), flush=True)
    print(json.dumps({"seconds": round(time.perf_counter() - t0, 1), "threads": args.threads}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
