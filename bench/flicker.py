"""Flicker of each style on a real clip, with and without --deflicker.

    python bench/flicker.py [--video ../shared/media/video/portrait_540x960_audio.mp4] [--frames 90]

flicker = mean|out(t) - out(t-1)| / mean|in(t) - in(t-1)|: 1 means the output changes exactly as
much as the input; above 1 the style adds shimmer of its own. Prints one JSON line per style and
writes OUT/deflicker_<style>.png: consecutive frames of the most moving part (input, plain,
filtered), to check for ghosting. It goes to a scratch folder, not docs/: the clip is not ours.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from stream import weights
from stream.deflicker import Deflicker, flicker_ratio
from stream.engine import Engine
from stream.sources import Frame, VideoSource

ROOT = Path(__file__).resolve().parent.parent
VIDEO = ROOT.parent / "shared" / "media" / "video" / "portrait_540x960_audio.mp4"
STRIP_FRAMES = 4
THUMB_PX = 240  # height of each frame in the strip


def _frames(path: Path, limit: int) -> list[np.ndarray]:
    out = []
    with VideoSource(path) as src:
        for item in src:
            if isinstance(item, Frame):
                out.append(item.image)
                if len(out) >= limit:
                    break
    return out


def _strip(rows: list[list[np.ndarray]]) -> np.ndarray:
    def thumb(img):
        h, w = img.shape[:2]
        return cv2.resize(img, (w * THUMB_PX // h, THUMB_PX), interpolation=cv2.INTER_AREA)
    return np.concatenate([np.concatenate([thumb(f) for f in row], axis=1) for row in rows], axis=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", type=Path, default=VIDEO)
    p.add_argument("--frames", type=int, default=90)
    p.add_argument("--max-side", type=int, default=512)
    p.add_argument("--out", type=Path, default=Path("/tmp/animestream-flicker"), help="where strips go")
    p.add_argument("--styles", default=",".join(s.name for s in weights.list_styles() if s.origin == "built-in"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    inputs = _frames(args.video, args.frames)
    motion = [float(cv2.absdiff(a, b).mean()) for a, b in zip(inputs, inputs[1:])]
    start = int(np.argmax(np.convolve(motion, np.ones(STRIP_FRAMES), "valid")))  # the most motion
    for style in filter(None, args.styles.split(",")):
        engine = Engine(style, max_side=args.max_side)
        plain = [engine(f).copy() for f in inputs]
        steady_engine = Deflicker(engine)
        steady = [steady_engine(f).copy() for f in inputs]
        before, after = flicker_ratio(inputs, plain), flicker_ratio(inputs, steady)
        print(json.dumps({"style": style, "video": args.video.name, "frames": len(inputs),
                          "max_side": args.max_side, "flicker": round(before, 3),
                          "flicker_deflicker": round(after, 3),
                          "reduction_pct": round(100 * (1 - after / before), 1)}), flush=True)
        window = slice(start, start + STRIP_FRAMES)
        strip = _strip([inputs[window], plain[window], steady[window]])
        cv2.imwrite(str(args.out / f"deflicker_{style}.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    main()
