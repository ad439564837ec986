"""GPU figures: the model alone, file jobs at 1080p and the live path, against a measured matmul peak.

    python bench/gpu.py [--style hayao] [--device cuda]          (what bench/bench.py --device cuda runs)
    python bench/gpu.py --device cpu --quick                      (the same code on small sizes, anywhere)

One JSON line per measurement, then a targets line:

- ``matmul_peak``: fp16 (CUDA) or bf16 (CPU) TFLOP/s of a large matrix product on this device;
- ``model``: frames per second of the generator alone (the engine's own module: fp16 and
  GroupNorm1 on CUDA) at 512x512 and 1920x1080, at batch 1 and at the engine's batch size, timed with
  device events after a warm-up, and its share of the matmul peak (FLOPs counted as the model's);
- ``file``: a 1080p clip made here (150 frames with sound), converted at cap 512 and at full resolution,
  frames per second of the whole job (decode | infer | encode), and with ``--compile`` at cap 512, with
  its one-off compile time;
- ``live``: the live path at cap 512 (a 640x480 30 fps clip played at camera pace), latency p50/p95.

Targets (one H200-class GPU): model >= 500 fps at 512x512, 1080p file job >= 120 fps at cap 512 and
>= 30 fps at full resolution, live p95 <= 30 ms.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream.engine import Engine  # noqa: E402
from stream.filejob import convert_video  # noqa: E402

FLOPS_PER_PIXEL = 210e9 / (512 * 512)  # the full generator's multiply-adds x 2 per input pixel (bench/model.py)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device, repeat: int) -> float:
    """Median seconds of ``fn()`` over ``repeat`` runs, after two warm-ups."""
    for _ in range(2):
        fn()
    _sync(device)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak(device: torch.device, quick: bool) -> float:
    """TFLOP/s of an n x n x n product in the device's half precision."""
    n = 1024 if quick else 8192
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    seconds = _time(lambda: a @ b, device, 3 if quick else 10)
    return 2 * n ** 3 / seconds / 1e12


def model_fps(engine: Engine, height: int, width: int, batch: int, repeat: int) -> float:
    x = torch.rand(batch, 3, height, width, device=engine.device).mul(2).sub(1).to(engine.dtype)
    with torch.inference_mode():
        seconds = _time(lambda: engine.module(x), engine.device, repeat)
    return batch / seconds


def make_clip(path: Path, width: int, height: int, frames: int, fps: int = 30) -> Path:
    """A clip with motion and sound: the shipped sample's photo panned across, with a tone."""
    import av
    import cv2

    photo = cv2.imread(str(ROOT / "samples" / "astronaut.jpg"))[..., ::-1]
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        v.options = {"preset": "ultrafast", "crf": "23"}
        a = out.add_stream("aac", rate=44100)
        a.layout = "stereo"
        for i in range(frames):
            zoom = 1.0 - 0.3 * i / max(1, frames - 1)
            crop = photo[: int(photo.shape[0] * zoom), : int(photo.shape[1] * zoom)]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(cv2.resize(crop, (width, height))),
                                               format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        t = np.arange(int(44100 * frames / fps)) / 44100
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            chunk = np.ascontiguousarray(np.stack([tone[start:start + 1024]] * 2))
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            af.sample_rate, af.pts, af.time_base = 44100, start, Fraction(1, 44100)
            out.mux(a.encode(af))
        out.mux(a.encode(None))
        out.mux(v.encode(None))
    return path


def file_job(style: str, device: str, src: Path, dst: Path, max_side: int, compile_it: bool = False) -> dict:
    engine = Engine(style, max_side=max_side, device=device, compile=compile_it)
    stats = convert_video(src, dst, engine, progress=False)
    return {"fps": stats.fps, "frames": stats.frames_out, "batch": engine.batch_size, "compile_s": engine.compile_s,
            "peak_rss_mb": stats.peak_rss_mb, "precision": engine.precision}


def live_job(style: str, device: str, src: Path, dst: Path, max_side: int) -> dict:
    from stream.live import StyleSwitcher
    from stream.livejob import LiveOptions, run_live

    engine = Engine(style, max_side=max_side, device=device)
    stats = run_live(str(src), StyleSwitcher([engine.spec], engine, engine.options), LiveOptions(output=dst),
                     announce=lambda _m: None)
    return {"fps": stats.fps, "latency_ms_p50": stats.latency_ms_p50, "latency_ms_p95": stats.latency_ms_p95,
            "dropped": stats.dropped, "frames": stats.frames_out}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--style", default="hayao")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--quick", action="store_true", help="small sizes and few frames: checks the code, measures nothing")
    p.add_argument("--compile", action="store_true", help="also time a --compile file job")
    p.add_argument("--out", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device"}))
        return 1
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    out = args.out or Path(tempfile.mkdtemp(prefix="animestream-gpu-"))
    out.mkdir(parents=True, exist_ok=True)
    repeat = 3 if args.quick else 20

    peak = matmul_peak(device, args.quick)
    print(json.dumps({"matmul_peak_tflops": round(peak, 1), "device": name, "torch": torch.__version__}), flush=True)

    rows = {}
    sizes = [(64, 64), (72, 128)] if args.quick else [(512, 512), (1080, 1920)]
    engine = Engine(args.style, max_side=0, device=args.device)
    for h, w in sizes:
        for batch in sorted({1, engine.batch_size if not args.quick else 2}):
            fps = model_fps(engine, h, w, batch, repeat)
            share = fps * h * w * FLOPS_PER_PIXEL * engine.spec.architecture["width"] ** 2 / (peak * 1e12)
            rows[("model", h, w, batch)] = fps
            print(json.dumps({"model": f"{w}x{h}", "batch": batch, "fps": round(fps, 1), "precision": engine.precision,
                              "share_of_matmul_peak": round(share, 3)}), flush=True)
    del engine

    clip = make_clip(out / "in.mp4", *((256, 144) if args.quick else (1920, 1080)), 12 if args.quick else 150)
    caps = [(64, "cap"), (0, "full")] if args.quick else [(512, "cap512"), (0, "full")]
    for cap, label in caps:
        row = file_job(args.style, args.device, clip, out / f"{label}.mp4", cap)
        rows[("file", label)] = row["fps"]
        print(json.dumps({"file": label, "resolution": "1080p" if not args.quick else "256x144", **row}), flush=True)
    if args.compile:
        row = file_job(args.style, args.device, clip, out / "compiled.mp4", caps[0][0], compile_it=True)
        print(json.dumps({"file": f"{caps[0][1]}+compile", **row}), flush=True)

    live_clip = make_clip(out / "live.mp4", *((160, 120) if args.quick else (640, 480)), 30 if args.quick else 180)
    row = live_job(args.style, args.device, live_clip, out / "live_rec.mp4", 64 if args.quick else 512)
    rows["live_p95"] = row["latency_ms_p95"]
    print(json.dumps({"live": "cap512" if not args.quick else "cap64", **row}), flush=True)

    if not args.quick:
        targets = {"model_fps_512": (max(v for k, v in rows.items() if k[:3] == ("model", 512, 512)), ">= 500"),
                   "file_fps_1080p_cap512": (rows[("file", "cap512")], ">= 120"),
                   "file_fps_1080p_full": (rows[("file", "full")], ">= 30"),
                   "live_p95_ms_512": (rows["live_p95"], "<= 30")}
        met = {k: (v >= float(g[3:]) if g.startswith(">=") else v <= float(g[3:])) for k, (v, g) in targets.items()}
        print(json.dumps({"targets": {k: {"value": round(v, 1), "goal": g, "met": met[k]}
                                      for k, (v, g) in targets.items()}, "all_met": all(met.values())}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
