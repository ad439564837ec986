"""Temporal consistency of each style as the video-style-transfer literature measures it: the warping error.

    python bench/temporal.py [--video CLIP ...] [--frames 40] [--side 256] [--teachers ../shared/teachers] \
        [--styles hayao,shinkai,...] [--precision auto] [--deflicker]

The warping error (Lai et al., "Learning Blind Video Temporal Consistency", ECCV 2018; ReCoNet, ACCV 2018):
optical flow between consecutive *input* frames (OpenCV's DIS flow, nothing downloaded) carries the previous
*output* onto the current one (``cv2.remap``), and the mean absolute difference (0-255, mean over RGB) is taken
on the pixels the flow can see: those that stay inside the frame and pass the forward-backward test
``|f + b(x+f)|^2 <= 0.01 (|f|^2 + |b(x+f)|^2) + 0.5`` (f: flow from frame t to t-1, b: from t-1 to t, pixels).
A clip's figure is the mean over its consecutive pairs. The input warped the same way gives the input's own
figure: what flow cannot explain in the real video (lighting, blur, compression); a style at 1.0x the input adds
no flicker of its own.

By default every clip in ``../shared/media/video`` is read (its first ``--frames`` frames, scaled so the
longest side is ``--side`` pixels) and every built-in style runs on it at ``min(--side, its cap)`` (lites at
160 px, scaled back as the engine does). Each style whose sidecar names a teacher of ``teachers.json``
(``quality.teacher``) has that teacher run the same way, at the same cap. JSON lines:

- ``{"clip": ..., "input": {...}}``: the input's own warping error, its mean frame difference and the share
  of pixels the occlusion test drops;
- one line per style, then one for its teacher (``"teacher": true``): ``warp_error``, ``vs_input``
  (style / input), ``vs_teacher`` (style / teacher), and beside them the old figures of bench/flicker.py:
  ``flicker`` (mean|dout| / mean|din|) and ``excess_pct``. With ``--deflicker`` a style line also has the
  style wrapped in stream/deflicker.py at its default setting (``deflicker``), with a fixed floor
  (``deflicker_fixed``: ``adaptive=False``) and at the earlier still-area filter's (``deflicker_before``:
  still, 0.7 / 10): the warping error, the ``lag`` of bench/flicker.py (mean
  |filtered - plain| on pixels whose input moved 10-30 / over 30 levels) and ``ghost``: mean |filtered -
  plain| on the pixels the occlusion test drops whose input moved 10 levels or more, where no history
  should show (things appearing from behind others, or entering the frame);
- a ``{"table": ...}`` line (clip -> input and style / teacher figures) and a ``{"targets": ...}`` line:
  every style's warping error <= 1.1x the input's and <= 0.7x its teacher's, on every clip, with the misses,
  how many (clip, style) pairs meet it (``pairs_met``, and with each filter) and the run's wall time.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from flicker import SETTINGS, _TeacherEngine, _frames, _lag, _pixel_change, _replay, _teachers, excess_change  # bench/
from stream import weights
from stream.deflicker import Deflicker, flicker_ratio
from stream.distill import fit_side
from stream.engine import PRECISIONS, Engine
from stream.errors import AnimestreamError

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi"}
VS_INPUT_MAX, VS_TEACHER_MAX = 1.1, 0.7  # the targets
FILTERS = (("deflicker", {}), ("deflicker_fixed", dict(SETTINGS)["fixed"]),  # row key, Deflicker keywords
           ("deflicker_before", dict(SETTINGS)["before"]))
GHOST_CHANGE = 10  # input change (levels, max over RGB) from which a dropped pixel counts for ``ghost``
OCCLUSION_REL, OCCLUSION_ABS = 0.01, 0.5  # forward-backward test (Sundaram et al. 2010, as ReCoNet and Lai et al.)


class PairFlow:
    """How frame t is seen from frame t-1: remap maps into t-1 and the mask of pixels the flow explains."""

    def __init__(self, map_x: np.ndarray, map_y: np.ndarray, visible: np.ndarray):
        self.map_x, self.map_y, self.visible = map_x, map_y, visible

    def warp(self, prev: np.ndarray) -> np.ndarray:
        """``prev`` (frame t-1, H x W x C) carried onto frame t."""
        return cv2.remap(prev, self.map_x, self.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def pair_flow(prev: np.ndarray, cur: np.ndarray, dis: cv2.DISOpticalFlow) -> PairFlow:
    """DIS flow both ways between two RGB frames, and the pixels of ``cur`` that pass the forward-backward
    consistency test and map inside ``prev``."""
    g0, g1 = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (prev, cur))
    f = dis.calc(g1, g0, None)  # cur(x) ~ prev(x + f(x))
    b = dis.calc(g0, g1, None)  # prev(y) ~ cur(y + b(y))
    h, w = g0.shape
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x, map_y = gx + f[..., 0], gy + f[..., 1]
    b_at = cv2.remap(b, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    gap = ((f + b_at) ** 2).sum(axis=2)
    bound = OCCLUSION_REL * ((f ** 2).sum(axis=2) + (b_at ** 2).sum(axis=2)) + OCCLUSION_ABS
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    return PairFlow(map_x, map_y, (gap <= bound) & inside)


def clip_flows(frames: list[np.ndarray]) -> list[PairFlow]:
    """One :class:`PairFlow` per consecutive pair of ``frames`` (DIS, the medium preset)."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return [pair_flow(a, b, dis) for a, b in zip(frames, frames[1:])]


def warping_error(frames: list[np.ndarray], flows: list[PairFlow]) -> float:
    """Mean over consecutive pairs of mean |frame(t) - warp(frame(t-1))| (0-255, mean over channels) on the
    visible pixels; frames are the input's or any output of the same size."""
    each = []
    for prev, cur, flow in zip(frames, frames[1:], flows):
        if flow.visible.any():
            diff = cv2.absdiff(cur, flow.warp(prev)).astype(np.float32).mean(axis=2)
            each.append(float(diff[flow.visible].mean()))
    return float(np.mean(each)) if each else 0.0


def _finite(x: float) -> float | None:
    return round(x, 3) if np.isfinite(x) else None  # JSON has no infinity: a still input has no flicker ratio


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b > 0 else None


def _motion(inputs: list[np.ndarray], outputs: list[np.ndarray], flows: list[PairFlow], in_warp: float) -> dict:
    warp = warping_error(outputs, flows)
    return {"warp_error": round(warp, 3), "vs_input": _ratio(warp, in_warp),
            "flicker": _finite(flicker_ratio(inputs, outputs)),
            "excess_pct": round(100 * excess_change(inputs, outputs), 1)}


def ghost(flows: list[PairFlow], input_change: list[np.ndarray], plain: list[np.ndarray],
          steady: list[np.ndarray]) -> float:
    """Mean |steady - plain| (0-255) on the pixels the occlusion test drops where the input changed by
    :data:`GHOST_CHANGE` levels or more: where a filter has no true history to show."""
    total = count = 0
    for flow, d_in, p, s in zip(flows, input_change, plain[1:], steady[1:]):
        m = ~flow.visible & (d_in >= GHOST_CHANGE)
        total += float(cv2.absdiff(p, s).astype(np.float32).mean(axis=2)[m].sum())
        count += int(m.sum())
    return round(total / count, 3) if count else 0.0


def _styles(spec: str, teachers: dict[str, dict], side: int) -> list[tuple[str, int, str | None]]:
    """(style, cap, teacher name or None) for each wanted style."""
    out = []
    for name in filter(None, spec.split(",")):
        meta = weights.resolve(name).meta
        cap = min(side, int(meta.get("recommended_max_side") or side))
        teacher = meta.get("quality", {}).get("teacher")
        out.append((name, cap, teacher if teacher in teachers else None))
    return out


def one_clip(args: argparse.Namespace, video: Path, jobs: list, teachers: dict[str, dict]) -> list[dict]:
    """Print and return the lines of one clip."""
    inputs = [fit_side(f, args.side) for f in _frames(video, args.frames)]
    if len(inputs) < 2:
        raise AnimestreamError(f"{video}: fewer than 2 frames")
    flows = clip_flows(inputs)
    in_warp = warping_error(inputs, flows)
    head = {"clip": video.name, "frames": len(inputs), "size": list(inputs[0].shape[1::-1]),
            "input": {"warp_error": round(in_warp, 3),
                      "frame_diff": round(float(np.mean([cv2.absdiff(a, b).mean()
                                                         for a, b in zip(inputs, inputs[1:])])), 3),
                      "occluded_pct": round(100 * (1 - float(np.mean([f.visible.mean() for f in flows]))), 1)}}
    print(json.dumps(head), flush=True)
    rows, done_teachers = [head], {}
    input_change = _pixel_change(inputs) if args.deflicker else None
    for style, cap, teacher, engine in jobs:
        plain = [engine(f).copy() for f in inputs]
        row = {"clip": video.name, "style": style, "teacher": False, "precision": engine.precision,
               "max_side": cap, **_motion(inputs, plain, flows, in_warp)}
        for key, keywords in FILTERS if args.deflicker else ():
            filtered = Deflicker(_replay(plain), **keywords)
            steady = [filtered(f).copy() for f in inputs]
            row[key] = {**_motion(inputs, steady, flows, in_warp), "lag": _lag(input_change, plain, steady),
                        "ghost": ghost(flows, input_change, plain, steady)}
        t_row = None
        if teacher is not None:
            key = (teacher, cap)
            if key not in done_teachers:
                run = _TeacherEngine(args.teachers, teachers[teacher], cap)
                done_teachers[key] = {"clip": video.name, "style": teacher, "teacher": True, "precision": "fp32",
                                      "max_side": cap, **_motion(inputs, [run(f) for f in inputs], flows, in_warp)}
                t_row = done_teachers[key]
            row["teacher_name"] = teacher
            row["vs_teacher"] = _ratio(row["warp_error"], done_teachers[key]["warp_error"])
            for name, _ in FILTERS if args.deflicker else ():
                row[name]["vs_teacher"] = _ratio(row[name]["warp_error"], done_teachers[key]["warp_error"])
        print(json.dumps(row), flush=True)
        rows.append(row)
        if t_row is not None:
            print(json.dumps(t_row), flush=True)
            rows.append(t_row)
    return rows


def _teacher_warps(rows: list[dict]) -> dict[tuple[str, str, int], float]:
    """(clip, teacher, cap) -> the teacher's warping error, for every teacher row."""
    return {(r["clip"], r["style"], r["max_side"]): r["warp_error"] for r in rows if r.get("teacher")}


def _misses(rows: list[dict], teacher_warp: dict, key: str | None) -> tuple[int, list[dict]]:
    """(pairs checked, the pairs that miss the target) of the style rows, plain (``key`` None) or filtered;
    ``teacher_warp`` from :func:`_teacher_warps`."""
    checked, misses = 0, []
    for r in rows:
        if "input" in r:
            in_warp = r["input"]["warp_error"]
        elif not r["teacher"] and (key is None or key in r):
            got, t = r if key is None else r[key], teacher_warp.get((r["clip"], r.get("teacher_name"), r["max_side"]))
            checked += 1
            # a style without a teacher run misses: the target needs both figures
            if got["warp_error"] > VS_INPUT_MAX * in_warp or t is None or got["warp_error"] > VS_TEACHER_MAX * t:
                misses.append({"clip": r["clip"], "style": r["style"], "vs_input": got["vs_input"],
                               "vs_teacher": got.get("vs_teacher")})
    return checked, misses


def summary(rows: list[dict], seconds: float) -> tuple[dict, dict]:
    """The ``table`` and ``targets`` lines from every clip's rows."""
    table, teacher_warp = {}, _teacher_warps(rows)
    for r in rows:
        if "input" in r:
            table[r["clip"]] = {"input": r["input"]["warp_error"]}
        elif not r["teacher"]:
            table[r["clip"]][r["style"]] = [r["warp_error"],
                                            teacher_warp.get((r["clip"], r.get("teacher_name"), r["max_side"]))]
    checked, misses = _misses(rows, teacher_warp, None)
    targets = {"targets": {"vs_input_max": VS_INPUT_MAX, "vs_teacher_max": VS_TEACHER_MAX}, "checked": checked,
               "met": checked > 0 and not misses, "pairs_met": checked - len(misses), "misses": misses,
               "seconds": round(seconds, 1)}
    for key, _ in FILTERS:
        n, missed = _misses(rows, teacher_warp, key)
        if n:
            suffix = "" if key == "deflicker" else key.removeprefix("deflicker")
            targets[f"met_with_deflicker{suffix}"] = not missed
            targets[f"pairs_met_with_deflicker{suffix}"] = n - len(missed)
            targets[f"misses_with_deflicker{suffix}"] = missed
    return {"table": table}, targets


def _videos(given: list[Path] | None) -> list[Path]:
    if given:
        for v in given:
            if not v.is_file():
                raise AnimestreamError(f"--video {v}: no such file")
        return given
    folder = SHARED / "media" / "video"
    found = sorted(p for p in folder.glob("*") if p.suffix.lower() in VIDEO_SUFFIXES) if folder.is_dir() else []
    if not found:
        raise AnimestreamError(f"no clips in {folder}; name some with --video")
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", type=Path, nargs="+", help="clips (default: every clip in ../shared/media/video)")
    p.add_argument("--frames", type=int, default=40, help="first N frames of each clip (default: %(default)s)")
    p.add_argument("--side", type=int, default=256, help="longest side the clip is scaled to, pixels "
                                                          "(default: %(default)s)")
    p.add_argument("--teachers", type=Path, default=SHARED / "teachers", help="teachers.json folder")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="as the CLI's (default: %(default)s)")
    p.add_argument("--styles", default="", help="comma-separated styles (default: every built-in style)")
    p.add_argument("--deflicker", action="store_true", help="also measure each style with --deflicker")
    args = p.parse_args(argv)
    if args.frames < 2 or args.side < 16:
        p.error("--frames must be >= 2 and --side >= 16")
    t0 = time.perf_counter()
    try:
        if not (args.teachers / "teachers.json").is_file():
            raise AnimestreamError(f"{args.teachers}/teachers.json not found (--teachers)")
        teachers = _teachers(args.teachers)
        videos = _videos(args.video)
        spec = args.styles or ",".join(s.name for s in weights.list_styles() if s.origin == "built-in")
        jobs = [(style, cap, teacher, Engine(style, max_side=cap, precision=args.precision))
                for style, cap, teacher in _styles(spec, teachers, args.side)]
        rows = []
        for video in videos:
            rows += one_clip(args, video, jobs, teachers)
    except AnimestreamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for line in summary(rows, time.perf_counter() - t0):
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
