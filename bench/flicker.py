"""Flicker of each style on a real clip, with and without --deflicker.

    python bench/flicker.py [--video ../shared/media/video/portrait_540x960_audio.mp4] [--frames 90] \
        [--precision auto|bf16|...]

flicker = mean|out(t) - out(t-1)| / mean|in(t) - in(t-1)|: 1 means the output changes exactly as
much as the input; above 1 the style adds shimmer of its own. Per style it prints one JSON line with:

- ``excess_pct``: the share of the output's change, pixel by pixel, beyond the input's change at the
  same pixel, mean(max(0, |dout| - |din|)) / mean|dout|. This is the shimmer a filter may remove
  without holding back real change; the rest follows the input.
- one ``deflicker`` entry per filter setting (the default first, then a fixed floor, still areas only,
  the earlier filter and a stronger one): the reduction
  of the flicker ratio, and ``lag`` = mean |filtered - unfiltered output| over pixels whose input
  moved by 10-30 and by > 30 levels, which is what shows as ghosting on moving things.

Each style is run once; the settings replay its outputs. It writes OUT/deflicker_<style>.png:
consecutive frames of the most moving part (input, plain, default filter, the same with a fixed
floor: ``adaptive=False``) to look at. It goes to a scratch folder, not docs/: the clip is not ours.

With ``--teachers DIR`` (a teachers.json folder), a distilled style's teacher runs on the same frames at
the same cap, resized as the engine resizes, and its line follows the style's (``"teacher": true``):
a student should flicker no more than its teacher. ``--video`` takes several clips.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from stream import weights
from stream.deflicker import Deflicker, flicker_ratio
from stream.engine import PRECISIONS, Engine, inference_size
from stream.onnxgen import OnnxGenerator, OnnxIO
from stream.sources import Frame, VideoSource

ROOT = Path(__file__).resolve().parent.parent
VIDEO = ROOT.parent / "shared" / "media" / "video" / "portrait_540x960_audio.mp4"
STRIP_FRAMES = 4
# (name, Deflicker keywords) of each filter setting tried, the shipped default first
SETTINGS = (("default", {}), ("fixed", {"adaptive": False}), ("still", {"motion": False}),
            ("before", {"motion": False, "strength": 0.7, "threshold": 10.0, "floor": 0.0}),
            ("stronger", {"strength": 0.95, "threshold": 16.0}))
MOTION_BANDS = ((10, 30), (30, 256))  # input change per pixel (max over RGB, 0..255) for the lag figures
CROP_PX = 240  # side of the full-resolution crop, around the most motion, shown per frame in the strip


def _frames(path: Path, limit: int) -> list[np.ndarray]:
    out = []
    with VideoSource(path) as src:
        for item in src:
            if isinstance(item, Frame):
                out.append(item.image)
                if len(out) >= limit:
                    break
    return out


def _pixel_change(frames: list[np.ndarray]) -> list[np.ndarray]:
    """|f(t) - f(t-1)| per pixel, max over RGB (uint8), for each consecutive pair."""
    return [cv2.absdiff(a, b).max(axis=2) for a, b in zip(frames, frames[1:])]


def _strip(rows: list[list[np.ndarray]]) -> np.ndarray:
    """Rows of frames, each cropped at full resolution where the first row moves most."""
    motion = sum(d.astype(np.float32) for d in _pixel_change(rows[0]))
    h, w = motion.shape
    side = min(CROP_PX, h, w)
    y, x = np.unravel_index(np.argmax(cv2.blur(motion, (side, side))), motion.shape)
    top, left = min(max(0, y - side // 2), h - side), min(max(0, x - side // 2), w - side)
    return np.concatenate([np.concatenate([f[top:top + side, left:left + side] for f in row], axis=1)
                           for row in rows], axis=0)


def excess_change(inputs: list[np.ndarray], outputs: list[np.ndarray]) -> float:
    """Share of sum |out(t) - out(t-1)| that exceeds the same pixel's |in(t) - in(t-1)| (max over RGB)."""
    return _excess(_pixel_change(inputs), outputs)


def _excess(input_change: list[np.ndarray], outputs: list[np.ndarray]) -> float:
    excess = total = 0.0
    for d_in, x, y in zip(input_change, outputs, outputs[1:]):
        d_out = cv2.absdiff(x, y).astype(np.float32).mean(axis=2)
        excess += float(np.maximum(d_out - d_in, 0).sum())
        total += float(d_out.sum())
    return excess / total if total else 0.0


def _replay(outputs: list[np.ndarray]):
    frames = iter(outputs)
    return lambda _image: next(frames)


def _lag(input_change: list[np.ndarray], plain: list[np.ndarray], steady: list[np.ndarray]) -> dict:
    sums = {band: [0.0, 0] for band in MOTION_BANDS}
    for d_in, p, s in zip(input_change, plain[1:], steady[1:]):
        dev = cv2.absdiff(p, s).astype(np.float32).mean(axis=2)
        for lo, hi in MOTION_BANDS:
            m = (d_in >= lo) & (d_in < hi)
            sums[(lo, hi)][0] += float(dev[m].sum())
            sums[(lo, hi)][1] += int(m.sum())
    return {f"{lo}-{hi if hi < 256 else 255}": round(t / max(n, 1), 2) for (lo, hi), (t, n) in sums.items()}


class _TeacherEngine:
    """A teacher generator run as the engine runs a style: scaled to the cap, stylised, scaled back."""

    def __init__(self, folder: Path, entry: dict, max_side: int):
        self.gen = OnnxGenerator(folder / entry["file"], OnnxIO.from_manifest(entry))
        self.max_side, self.precision = max_side, "fp32"

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        iw, ih = inference_size(w, h, self.max_side)
        small = frame if (iw, ih) == (w, h) else cv2.resize(frame, (iw, ih), interpolation=cv2.INTER_AREA)
        out = self.gen.stylise(small)
        return out if (iw, ih) == (w, h) else cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)


def _teachers(folder: Path | None) -> dict[str, dict]:
    if folder is None:
        return {}
    return {t["name"]: t for t in json.loads((folder / "teachers.json").read_text())["teachers"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", type=Path, nargs="+", default=[VIDEO])
    p.add_argument("--teachers", type=Path, help="teachers.json folder: also measure each style's teacher")
    p.add_argument("--frames", type=int, default=90)
    p.add_argument("--max-side", type=int, default=None,
                   help="cap for every style and teacher (default: each style's recommended cap, 160 for lites)")
    p.add_argument("--out", type=Path, default=Path("/tmp/animestream-flicker"), help="where strips go")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="as the CLI's; auto runs calibrated styles in INT8 on CPUs with VNNI")
    p.add_argument("--styles", default=",".join(s.name for s in weights.list_styles() if s.origin == "built-in"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    teachers = _teachers(args.teachers)
    for video in args.video:
        _one_video(args, video, teachers)


def _one_video(args: argparse.Namespace, video: Path, teachers: dict[str, dict]) -> None:
    inputs = _frames(video, args.frames)
    motion = [float(cv2.absdiff(a, b).mean()) for a, b in zip(inputs, inputs[1:])]
    start = int(np.argmax(np.convolve(motion, np.ones(STRIP_FRAMES), "valid")))  # the most motion
    window = slice(start, start + STRIP_FRAMES)
    input_change = _pixel_change(inputs)
    jobs = []
    for style in filter(None, args.styles.split(",")):
        meta = weights.resolve(style).meta
        cap = args.max_side if args.max_side is not None else meta.get("recommended_max_side", 512)
        jobs.append((style, False, lambda s=style, c=cap: Engine(s, max_side=c, precision=args.precision)))
        teacher = meta.get("quality", {}).get("teacher")
        if teacher in teachers:
            jobs.append((teacher, True, lambda t=teacher, c=cap: _TeacherEngine(args.teachers, teachers[t], c)))
    for style, is_teacher, make in jobs:
        engine = make()
        plain = [engine(f).copy() for f in inputs]
        before = flicker_ratio(inputs, plain)
        settings, filtered_windows = [], []
        for name, keywords in SETTINGS:
            filtered = Deflicker(_replay(plain), **keywords)
            steady = [filtered(f).copy() for f in inputs]
            filtered_windows.append(steady[window])  # the strip needs no more of it
            settings.append({"name": name, "strength": filtered.strength, "threshold": filtered.threshold,
                             "floor": filtered.floor, "adaptive": filtered.adaptive, "motion": filtered.motion,
                             "reduction_pct": round(100 * (1 - flicker_ratio(inputs, steady) / before), 1),
                             "lag": _lag(input_change, plain, steady)})
        print(json.dumps({"style": style, "teacher": is_teacher, "precision": engine.precision, "video": video.name,
                          "frames": len(inputs), "max_side": engine.max_side, "flicker": round(before, 3),
                          "excess_pct": round(100 * _excess(input_change, plain), 1),
                          "deflicker": settings}), flush=True)
        strip = _strip([inputs[window], plain[window], filtered_windows[0], filtered_windows[1]])
        png = args.out / f"deflicker_{Path(style).stem}_{engine.precision}_{engine.max_side}_{video.stem}.png"
        if not cv2.imwrite(str(png), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR)):
            raise SystemExit(f"could not write {png}")


if __name__ == "__main__":
    main()
