"""Side-by-side benchmark: the seed recipe against animestream, on the same clip, weights and cap.

    python bench/bench.py                       # the shipped sample, caps 512 and 256
    python bench/bench.py --input clip.mp4 --frames 48

Each configuration runs in its own subprocess (so peak RSS is its own) and prints one JSON line;
then a line with the ratios, and a last line with every performance target, its value and whether
it is met on this machine. Configurations:

  seed        the original image service's recipe applied to video: TorchScript fp32, eval +
              no_grad, one thread doing decode -> resize (longest side 512, Lanczos) -> infer ->
              encode, one frame at a time, at the resized size
  animestream the threaded pipeline (decode | infer | encode) with the engine's default precision
              (INT8 for a calibrated style on a CPU with VNNI, else bf16 + channels_last where the
              CPU has it), reused buffers, output at the input's size (more work than the seed does)
  live        the live path on a 640x480 30 fps clip played at camera pace, recorded to a file,
              for each STYLE[@CAP] of --live (no CAP: the style's recommended cap)
  memory      RSS growth of a file job over 3000 frames, after a 300-frame warm-up
  model       bench/model.py: model-only ms/frame and share of the measured bf16 matmul peak, for the
              bf16 engine and, on CPUs with VNNI, the INT8 one (the target reads the one file jobs use)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "astronaut_pan.mp4"


def machine() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores"


def seed_stylize(model, rgb, max_side: int):
    """The seed's work on one RGB uint8 image, kept deliberately as it was: longest side to
    ``max_side`` (Lanczos; even sizes, for x264), the TorchScript model in fp32 under no_grad."""
    import cv2
    import torch

    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = cv2.resize(rgb, (int(w * scale) // 2 * 2, int(h * scale) // 2 * 2), interpolation=cv2.INTER_LANCZOS4)
    with torch.no_grad():
        x = torch.from_numpy(small).permute(2, 0, 1).unsqueeze(0).float() / 127.5 - 1
        y = model(x)
    return ((y[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).byte().numpy()


def run_seed(src: str, dst: str, style: str, max_side: int | None, frames: int, device: str = "cpu") -> dict:
    """The seed recipe, kept deliberately as it was (fp32 TorchScript, one thread, per frame)."""
    import av

    from stream import weights
    from stream.pipeline import peak_rss_mb

    model = weights.load_model(style)  # TorchScript fp32, as the seed ran it
    t0 = time.perf_counter()
    n = 0
    with av.open(src) as inp, av.open(dst, "w") as out:
        vin = inp.streams.video[0]
        stream = None
        for frame in inp.decode(vin):
            res = seed_stylize(model, frame.to_ndarray(format="rgb24"), max_side)
            if stream is None:
                stream = out.add_stream("libx264", rate=vin.average_rate or 30)
                stream.height, stream.width = res.shape[:2]
                stream.pix_fmt = "yuv420p"
            vf = av.VideoFrame.from_ndarray(res, format="rgb24")
            vf.pts, vf.time_base = n, Fraction(1, int(vin.average_rate or 30))
            out.mux(stream.encode(vf))
            n += 1
            if n >= frames:
                break
        out.mux(stream.encode(None))
    wall = time.perf_counter() - t0
    return {"frames": n, "wall_s": round(wall, 2), "fps": round(n / wall, 3), "s_per_frame": round(wall / n, 3),
            "peak_rss_mb": round(peak_rss_mb(), 1), "precision": "fp32", "device": "cpu"}


def run_animestream(src: str, dst: str, style: str, max_side: int | None, frames: int, device: str = "auto") -> dict:
    from stream.filejob import convert_video
    from stream.engine import Engine
    from stream.sources import VideoSource

    clip = src
    total = VideoSource(src)
    if total.frame_count and frames < total.frame_count:
        clip = str(Path(dst).with_name("bench_input.mp4"))
        _cut(src, clip, frames)
    total.close()
    engine = Engine(style, max_side=max_side, device=device)
    stats = convert_video(clip, dst, engine, progress=False)
    return {"frames": stats.frames_out, "wall_s": stats.wall_s, "fps": stats.fps,
            "s_per_frame": round(stats.wall_s / stats.frames_out, 3), "peak_rss_mb": stats.peak_rss_mb,
            "latency_ms_p50": stats.latency_ms_p50, "precision": engine.precision}


def _cut(src: str, dst: str, frames: int) -> None:
    """Re-encode the first ``frames`` frames of the clip at high quality (video only)."""
    import av
    with av.open(src) as inp, av.open(dst, "w") as out:
        vin = inp.streams.video[0]
        stream = out.add_stream("libx264", rate=vin.average_rate or 30)
        stream.width, stream.height, stream.pix_fmt = vin.width, vin.height, "yuv420p"
        stream.options = {"crf": "12"}
        for i, frame in enumerate(inp.decode(vin)):
            if i >= frames:
                break
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def run_live(src: str, dst: str, style: str, max_side: int | None, frames: int, device: str = "auto") -> dict:
    """The live path: a 640x480 30 fps clip played at camera pace, recorded to a file."""
    from stream.engine import Engine
    from stream.live import StyleSwitcher
    from stream.livejob import LiveOptions, run_live as live_job

    clip = Path(dst).with_name("live_640x480_30fps.mp4")
    if not clip.exists():
        _camera_clip(clip)
    engine = Engine(style, max_side=max_side, device=device)
    switcher = StyleSwitcher([style], engine, engine.options)
    stats = live_job(str(clip), switcher, LiveOptions(output=Path(dst)), announce=lambda _m: None)
    return {"frames_in": stats.frames_in, "frames_out": stats.frames_out, "dropped": stats.dropped,
            "fps": stats.fps, "latency_ms_p50": stats.latency_ms_p50, "latency_ms_p95": stats.latency_ms_p95,
            "peak_rss_mb": stats.peak_rss_mb, "precision": engine.precision, "inference_cap": engine.max_side}


LIVE_SECONDS = 6
LIVE_SIZE = (640, 480)


def _write_clip(path: Path, size: tuple[int, int], frames: int, draw) -> None:
    """Encode ``frames`` RGB pictures ``draw(i)`` of ``size`` (w, h) as H.264 at 30 fps."""
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for i in range(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(draw(i)), format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, 30)
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))


def _camera_clip(path: Path) -> None:
    """A webcam-like clip: the sample photo panned at 640x480, 30 fps."""
    import cv2

    photo = cv2.cvtColor(cv2.imread(str(ROOT / "samples" / "astronaut.jpg")), cv2.COLOR_BGR2RGB)
    n = 30 * LIVE_SECONDS

    def draw(i: int):
        x0 = int(64 * i / n)
        return cv2.resize(photo[32:32 + 384, x0:x0 + 512], LIVE_SIZE, interpolation=cv2.INTER_LINEAR)

    _write_clip(path, LIVE_SIZE, n, draw)

MEMORY_FRAMES = 3300  # the growth is read over the last 3000
MEMORY_WARMUP = 300  # frames before the first RSS reading: every allocator has seen the stream by then
MEMORY_SIZE = (320, 240)


class _RssProbe:
    """An engine wrapper that reads RSS at the warm-up frame and every 500 frames after it."""

    def __init__(self, engine):
        from stream.pipeline import current_rss_mb
        self.engine, self.n, self.samples, self._rss = engine, 0, {}, current_rss_mb

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def __call__(self, frame):
        self.n += 1
        if self.n >= MEMORY_WARMUP and (self.n - MEMORY_WARMUP) % 500 == 0:
            self.samples[self.n] = round(self._rss(), 2)
        return self.engine(frame)


def run_memory(src: str, dst: str, style: str, max_side: int | None, frames: int, device: str = "auto") -> dict:
    """RSS growth of a whole file job (decode, engine, x264, mux) over MEMORY_FRAMES frames."""
    import numpy as np

    from stream.filejob import convert_video
    from stream.engine import Engine

    clip = Path(dst).with_name(f"memory_{MEMORY_FRAMES}.mp4")
    if not clip.exists():
        w, h = MEMORY_SIZE
        ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]

        def draw(i: int):
            img = np.broadcast_to((ramp + i * 3) % 256, (h, w, 3)).astype(np.uint8)
            img[h // 4: h // 2, (i * 2) % (w - 40):(i * 2) % (w - 40) + 40] = (255, 200, 40)
            return img

        _write_clip(clip, MEMORY_SIZE, MEMORY_FRAMES, draw)
    probe = _RssProbe(Engine(style, max_side=max_side, device=device))
    stats = convert_video(str(clip), dst, probe, progress=False)
    first, last = min(probe.samples), max(probe.samples)
    return {"frames": stats.frames_out, "rss_mb_by_frame": probe.samples,
            "rss_growth_mb": round(probe.samples[last] - probe.samples[first], 2),
            "over_frames": last - first, "fps": stats.fps, "peak_rss_mb": stats.peak_rss_mb}


RUNNERS = {"seed": run_seed, "animestream": run_animestream, "live": run_live, "memory": run_memory}


def _child(args: argparse.Namespace, one: str, cap: int | None, style: str) -> dict:
    """Run one configuration in a fresh interpreter (its own peak RSS) and echo its JSON line."""
    cmd = [sys.executable, __file__, "--one", one, "--input", args.input, "--style", style,
           "--frames", str(args.frames), "--out", args.out, "--device", args.device]
    if cap is not None:
        cmd += ["--cap", str(cap)]
    line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    print(line, flush=True)
    return json.loads(line)


def _model_shares(size: int, style: str) -> dict[str, float]:
    """Each engine variant's share of the bf16 matmul peak at size x size, from bench/model.py:
    ``engine`` (bf16) and, on CPUs with VNNI, ``engine-int8`` (the default path there)."""
    cmd = [sys.executable, str(Path(__file__).with_name("model.py")), "--sizes", str(size), "--style", style]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    lines = [json.loads(x) for x in out.splitlines() if x]
    for row in lines:
        print(json.dumps(row), flush=True)
    return {r["variant"]: r["share_of_matmul_peak"] for r in lines
            if "share_of_matmul_peak" in r and r["variant"].startswith("engine")}


def _live_spec(spec: str) -> tuple[str, int | None]:
    style, _, cap = spec.partition("@")
    return style, int(cap) if cap else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", default=str(SAMPLE))
    p.add_argument("--style", default="shinkai")
    p.add_argument("--caps", default="512,256", help="comma-separated --max-side values (pixels)")
    p.add_argument("--frames", type=int, default=10**9, help="stop after this many frames")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="animestream's device (the seed recipe always ran on the CPU)")
    p.add_argument("--live", default="shinkai,shinkai-lite,hayao-lite",
                   help="STYLE[@CAP] list for the live-path run; no CAP: the style's recommended cap ('' to skip)")
    p.add_argument("--memory-cap", type=int, default=128,
                   help=f"cap for the {MEMORY_FRAMES - MEMORY_WARMUP}-frame RSS-growth run (0 to skip)")
    p.add_argument("--model-size", type=int, default=512, help="square size for the model-only run (0 to skip)")
    p.add_argument("--one", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    p.add_argument("--cap", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default="/tmp/animestream-bench", help="scratch folder")
    args = p.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.one:
        dst = str(Path(args.out) / f"{args.one}_{Path(args.style).stem}_{args.cap}.mp4")  # style may be a path
        device = "cpu" if args.one == "seed" else args.device
        result = RUNNERS[args.one](args.input, dst, args.style, args.cap, args.frames, device)
        print(json.dumps({"config": args.one, "style": args.style, "max_side": args.cap, **result}), flush=True)
        return 0
    caps = [int(c) for c in args.caps.split(",") if c]
    results = {(name, cap): _child(args, name, cap, args.style) for cap in caps for name in ("seed", "animestream")}
    live = {spec: _child(args, "live", _live_spec(spec)[1], _live_spec(spec)[0])
            for spec in args.live.split(",") if spec}
    memory = _child(args, "memory", args.memory_cap, args.style) if args.memory_cap else None
    shares = _model_shares(args.model_size, args.style) if args.model_size else {}
    if args.device == "cuda":  # model-only fps at 512 and 1080p, 1080p file jobs, live at 512, vs the fp16 peak
        gpu = [sys.executable, str(Path(__file__).with_name("gpu.py")), "--style", args.style, "--device", "cuda"]
        print(subprocess.run(gpu, check=True, capture_output=True, text=True).stdout, end="", flush=True)

    summary = {"summary": True, "machine": machine(), "input": Path(args.input).name}
    for cap in caps:
        seed, ours = results[("seed", cap)], results[("animestream", cap)]
        summary[f"speedup_{cap}"] = round(ours["fps"] / seed["fps"], 2)
        summary[f"rss_ratio_{cap}"] = round(ours["peak_rss_mb"] / seed["peak_rss_mb"], 2)
    print(json.dumps(summary), flush=True)

    targets = {}
    if 512 in caps:
        targets["file_speedup_512"] = (summary["speedup_512"], ">= 2.5", summary["speedup_512"] >= 2.5)
        peak = results[("animestream", 512)]["peak_rss_mb"]
        targets["peak_rss_mb_512"] = (peak, "< 400", peak < 400)
    if shares:  # the model as a file job runs it: INT8 where the CPU has VNNI, else bf16
        variant = "engine-int8" if "engine-int8" in shares else "engine"
        share = shares[variant]
        targets[f"model_share_of_bf16_peak_{args.model_size}_{variant}"] = (share, ">= 0.8", share >= 0.8)
    if memory:
        growth = memory["rss_growth_mb"]
        targets[f"rss_growth_mb_over_{memory['over_frames']}_frames"] = (growth, "<= 2", growth <= 2)
    for spec, row in live.items():
        if "-lite" in spec:
            targets[f"live_fps_{spec}"] = (row["fps"], ">= 24", row["fps"] >= 24)
            targets[f"live_p95_ms_{spec}"] = (row["latency_ms_p95"], "<= 150", row["latency_ms_p95"] <= 150)
    print(json.dumps({"targets": {k: {"value": v, "goal": g, "met": m} for k, (v, g, m) in targets.items()},
                      "all_met": all(m for _, _, m in targets.values())}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
