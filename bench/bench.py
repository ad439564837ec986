"""Side-by-side benchmark: the seed recipe against animestream, on the same clip, weights and cap.

    python bench/bench.py                       # the shipped sample, caps 512 and 256
    python bench/bench.py --input clip.mp4 --frames 48
    python bench/bench.py --isa avx2,native --baseline ../before   # two CPU classes, before and after

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
              for each STYLE[@CAP][/THREADS][+deflicker] of --live (no CAP: the style's recommended
              cap; +deflicker: with --deflicker, as streamers may run it); ``model_ms_p50`` is the
              model's own time per frame, against the camera's 33 ms
  memory      RSS growth of a file job over 3000 frames, after a 300-frame warm-up
  model       bench/model.py: model-only ms/frame and share of the measured bf16 matmul peak, for the
              bf16 engine and, on CPUs with VNNI, the INT8 one (the target reads the one file jobs use)
  teacher     the style's model alone at 512x512 as the engine runs it (its default path here) against
              its teacher in onnxruntime with as many threads, timed in alternation (needs ../shared)

``--isa`` runs every configuration once per CPU class, side by side: ``avx2`` and ``avx512`` start each
child with ``ONEDNN_MAX_CPU_ISA`` and ``ATEN_CPU_CAPABILITY`` limited to that class (an emulation on a
bigger CPU: oneDNN's and ATen's kernels are those of the class; onnxruntime, the teacher's runtime,
ignores the limit and keeps its best kernels, which only favours the teacher), ``native`` with none.
Every line names the ISA and the CPU class the child saw. ``--baseline DIR`` runs the animestream,
live and teacher configurations a second time with DIR's ``stream`` package (an earlier checkout),
and the targets line adds this checkout's ratio to it.
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
            "latency_ms_p50": stats.latency_ms_p50, "precision": engine.precision,
            "network": getattr(getattr(engine, "net", None), "name", style)}  # a narrower variant, where one runs


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


def run_live(src: str, dst: str, style: str, max_side: int | None, frames: int, device: str = "auto",
             threads: int = 0, deflicker: bool = False) -> dict:
    """The live path: a 640x480 30 fps clip played at camera pace, recorded to a file (``deflicker``: with
    the temporal filter, as ``--deflicker``)."""
    from stream.engine import Engine
    from stream.live import StyleSwitcher
    from stream.livejob import LiveOptions, run_live as live_job

    import numpy as np

    class TimedSwitcher(StyleSwitcher):  # what the model takes of each frame's time, the filter aside
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.ms: list[float] = []

        def __call__(self, image):
            t0 = time.perf_counter()
            out = super().__call__(image)
            self.ms.append(1000 * (time.perf_counter() - t0))
            return out

    clip = Path(dst).with_name("live_640x480_30fps.mp4")
    if not clip.exists():
        _camera_clip(clip)
    engine = Engine(style, max_side=max_side, device=device, threads=threads)
    switcher = TimedSwitcher([style], engine, engine.options)
    stats = live_job(str(clip), switcher, LiveOptions(output=Path(dst), deflicker=deflicker),
                     announce=lambda _m: None)
    return {"frames_in": stats.frames_in, "frames_out": stats.frames_out, "dropped": stats.dropped,
            "fps": stats.fps, "latency_ms_p50": stats.latency_ms_p50, "latency_ms_p95": stats.latency_ms_p95,
            "model_ms_p50": round(float(np.median(switcher.ms)), 1), "peak_rss_mb": stats.peak_rss_mb,
            "precision": engine.precision, "inference_cap": engine.max_side, "threads": engine.threads,
            "deflicker": deflicker}


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


TEACHER_SIDE = 512  # pixels: square frames for the student/teacher timing
TEACHER_ROUNDS = 5


def run_teacher(src: str, dst: str, style: str, max_side: int | None, frames: int, device: str = "auto") -> dict:
    """The style's model alone against its teacher's (onnxruntime), alternating, medians of the rounds."""
    import statistics

    import numpy as np
    import torch

    from flicker import _teachers  # bench/flicker.py, beside this script
    from stream import weights
    from stream.engine import Engine
    from stream.onnxgen import OnnxGenerator, OnnxIO

    spec = weights.resolve(style)
    teacher_name = spec.meta.get("quality", {}).get("teacher")
    folder = Path(os.environ.get("ANIMESTREAM_BENCH_TEACHERS", ROOT.parent / "shared" / "teachers"))
    entries = _teachers(folder) if (folder / "teachers.json").exists() else {}
    if teacher_name not in entries:
        return {"skipped": f"no teacher {teacher_name!r} in {folder}"}
    entry = entries[teacher_name]
    engine = Engine(spec, max_side=TEACHER_SIDE, device=device)
    teacher = OnnxGenerator(folder / entry["file"], OnnxIO.from_manifest(entry), threads=engine.threads)
    frame = np.random.default_rng(0).integers(0, 256, (TEACHER_SIDE, TEACHER_SIDE, 3), dtype=np.uint8)
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 127.5 - 1
    engine(frame), teacher(x)  # warm-up
    student_ms, teacher_ms = [], []
    for _ in range(TEACHER_ROUNDS):
        t0 = time.perf_counter()
        engine(frame)
        t1 = time.perf_counter()
        teacher(x)
        student_ms.append((t1 - t0) * 1000)
        teacher_ms.append((time.perf_counter() - t1) * 1000)
    s_ms, t_ms = statistics.median(student_ms), statistics.median(teacher_ms)
    return {"teacher": teacher_name, "student_ms": round(s_ms, 1), "teacher_ms": round(t_ms, 1),
            "faster": round(t_ms / s_ms, 2), "precision": engine.precision,
            "network": getattr(getattr(engine, "net", None), "name", spec.name),
            "backend": getattr(getattr(engine, "backend", None), "name", "-"),  # a baseline may predate backends
            "threads": engine.threads}


RUNNERS = {"seed": run_seed, "animestream": run_animestream, "live": run_live, "memory": run_memory,
           "teacher": run_teacher}
ISA_LIMITS = {  # what each --isa value sets in a child's environment (PyTorch reads both at start-up)
    "native": {},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    "avx512": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "ATEN_CPU_CAPABILITY": "avx512"},
}


def _env(isa: str, code: Path | None = None) -> dict[str, str]:
    """A child's environment: the ISA's limits, and ``code`` first on the path (a baseline checkout)."""
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")}
    env.update(ISA_LIMITS[isa])
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _child(args: argparse.Namespace, one: str, cap: int | None, style: str, isa: str = "native",
           code: Path | None = None, threads: int = 0, deflicker: bool = False) -> dict:
    """Run one configuration in a fresh interpreter (its own peak RSS) under ``isa``'s limits, with
    ``code``'s stream package where given, and echo its JSON line."""
    os.environ["ANIMESTREAM_BENCH_TEACHERS"] = str(args.teachers)
    cmd = [sys.executable, __file__, "--one", one, "--input", args.input, "--style", style,
           "--frames", str(args.frames), "--out", args.out, "--device", args.device]
    if cap is not None:
        cmd += ["--cap", str(cap)]
    if threads:
        cmd += ["--threads", str(threads)]
    if deflicker:
        cmd += ["--deflicker"]
    line = subprocess.run(cmd, check=True, capture_output=True, text=True,
                          env=_env(isa, code)).stdout.strip().splitlines()[-1]
    row = {"isa": isa, **({"code": str(code)} if code else {}), **json.loads(line)}
    print(json.dumps(row), flush=True)
    return row


def _model_shares(size: int, style: str, isa: str = "native") -> dict[str, float]:
    """Each engine variant's share of the bf16 matmul peak at size x size, from bench/model.py:
    ``engine`` (bf16) and, on CPUs with VNNI, ``engine-int8`` (the default path there)."""
    cmd = [sys.executable, str(Path(__file__).with_name("model.py")), "--sizes", str(size), "--style", style]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=_env(isa)).stdout
    lines = [{"isa": isa, **json.loads(x)} for x in out.splitlines() if x]
    for row in lines:
        print(json.dumps(row), flush=True)
    return {r["variant"]: r["share_of_matmul_peak"] for r in lines
            if "share_of_matmul_peak" in r and r["variant"].startswith("engine")}


def _live_spec(spec: str) -> tuple[str, int | None, int, bool]:
    """``STYLE[@CAP][/THREADS][+deflicker]`` -> (style, cap or None, model threads or 0 for the engine's
    default, whether --deflicker is on)."""
    spec, plus, flag = spec.partition("+")
    if plus and flag != "deflicker":
        raise ValueError(f"--live {spec}+{flag}: the only option after + is deflicker")
    rest, _, threads = spec.partition("/")
    style, _, cap = rest.partition("@")
    return style, int(cap) if cap else None, int(threads or 0), bool(plus)


def _cpu_class() -> str:
    """The CPU class this process runs as (a baseline checkout may predate :mod:`stream.cpu`)."""
    try:
        from stream import cpu
    except ImportError:
        return "unknown (the baseline has no stream.cpu)"
    return cpu.current().describe()


def _targets(args: argparse.Namespace, isa: str, caps: list[int], runs: dict, shares: dict) -> dict:
    """Each performance target of one CPU class: (value, goal, met)."""
    targets = {}
    if 512 in caps:
        speedup = round(runs[("animestream", 512)]["fps"] / runs[("seed", 512)]["fps"], 2)
        targets["file_speedup_512"] = (speedup, ">= 2.5", speedup >= 2.5)
        peak = runs[("animestream", 512)]["peak_rss_mb"]
        targets["peak_rss_mb_512"] = (peak, "< 580 (the seed service's)", peak < 580)
    teacher = runs.get(("teacher", None), {})
    if "faster" in teacher:
        targets["faster_than_teacher"] = (teacher["faster"], ">= 2", teacher["faster"] >= 2)
    if shares and isa == "native":  # the model as a file job runs it: INT8 where the CPU has VNNI, else bf16
        variant = "engine-int8" if "engine-int8" in shares else "engine"
        share = shares[variant]
        targets[f"model_share_of_bf16_peak_{args.model_size}_{variant}"] = (share, ">= 0.8", share >= 0.8)
    if ("memory", None) in runs:
        growth = runs[("memory", None)]["rss_growth_mb"]
        targets[f"rss_growth_mb_over_{runs[('memory', None)]['over_frames']}_frames"] = (growth, "<= 2", growth <= 2)
    for key, row in runs.items():
        if key[0] == "live" and "-lite" in key[1]:
            targets[f"live_fps_{key[1]}"] = (row["fps"], ">= 24", row["fps"] >= 24)
            targets[f"live_p95_ms_{key[1]}"] = (row["latency_ms_p95"], "<= 100", row["latency_ms_p95"] <= 100)
    return targets


def _against_baseline(runs: dict, before: dict) -> dict:
    """This checkout's figure over the baseline's, per configuration (fps: higher is better; for the
    teacher row, the student's speed-up)."""
    out = {}
    for key, row in before.items():
        now = runs.get(key, {})
        name = "_".join(str(k) for k in key if k is not None)
        if "fps" in row and "fps" in now:
            out[f"{name}_fps"] = [row["fps"], now["fps"], round(now["fps"] / row["fps"], 2)]
        if "student_ms" in row and "student_ms" in now:
            out[f"{name}_ms"] = [row["student_ms"], now["student_ms"], round(row["student_ms"] / now["student_ms"], 2)]
    return out


def _run_class(args: argparse.Namespace, isa: str, caps: list[int]) -> dict:
    """Every configuration under one ISA limit: the JSON lines, then its summary and targets."""
    runs = {(name, cap): _child(args, name, cap, args.style, isa) for cap in caps for name in ("seed", "animestream")}
    for spec in filter(None, args.live.split(",")):
        style, cap, threads, deflicker = _live_spec(spec)
        runs[("live", spec)] = _child(args, "live", cap, style, isa, threads=threads, deflicker=deflicker)
    if args.teacher:
        runs[("teacher", None)] = _child(args, "teacher", None, args.style, isa)
    if args.memory_cap:
        runs[("memory", None)] = _child(args, "memory", args.memory_cap, args.style, isa)
    shares = _model_shares(args.model_size, args.style, isa) if args.model_size else {}
    before = {}
    if args.baseline:
        code = Path(args.baseline).resolve()
        for key in [k for k in runs if k[0] in ("animestream", "live", "teacher")]:
            style, cap, threads, deflicker = _live_spec(key[1]) if key[0] == "live" else (args.style, key[1], 0, False)
            before[key] = _child(args, key[0], cap, style, isa, code, threads=threads, deflicker=deflicker)
    summary = {"summary": True, "isa": isa, "cpu_class": runs[next(iter(runs))].get("cpu_class"),
               "machine": machine(), "input": Path(args.input).name}
    for cap in caps:
        seed, ours = runs[("seed", cap)], runs[("animestream", cap)]
        summary[f"speedup_{cap}"] = round(ours["fps"] / seed["fps"], 2)
        summary[f"rss_ratio_{cap}"] = round(ours["peak_rss_mb"] / seed["peak_rss_mb"], 2)
    if before:
        summary["against_baseline"] = _against_baseline(runs, before)
    print(json.dumps(summary), flush=True)
    targets = _targets(args, isa, caps, runs, shares)
    print(json.dumps({"targets": {k: {"value": v, "goal": g, "met": m} for k, (v, g, m) in targets.items()},
                      "isa": isa, "all_met": all(m for _, _, m in targets.values())}), flush=True)
    return targets


def main(argv: list[str] | None = None) -> int:
    from stream import weights

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", default=str(SAMPLE))
    p.add_argument("--style", default=weights.DEFAULT_STYLE)
    p.add_argument("--caps", default="512,256", help="comma-separated --max-side values (pixels)")
    p.add_argument("--frames", type=int, default=10**9, help="stop after this many frames")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="animestream's device (the seed recipe always ran on the CPU)")
    p.add_argument("--live", default=f"{weights.DEFAULT_LIVE_STYLE},shinkai-lite",
                   help="STYLE[@CAP][/THREADS][+deflicker] list for the live-path run; no CAP: the style's "
                        "recommended cap; no THREADS: the engine's default; +deflicker: with --deflicker ('' to skip)")
    p.add_argument("--memory-cap", type=int, default=128,
                   help=f"cap for the {MEMORY_FRAMES - MEMORY_WARMUP}-frame RSS-growth run (0 to skip)")
    p.add_argument("--model-size", type=int, default=512, help="square size for the model-only run (0 to skip)")
    p.add_argument("--no-teacher", dest="teacher", action="store_false", help="skip the student/teacher timing")
    p.add_argument("--teachers", type=Path, default=ROOT.parent / "shared" / "teachers",
                   help="folder with teachers.json and the ONNX teachers (default: %(default)s)")
    p.add_argument("--isa", default="native", help=f"comma-separated CPU classes to run as: {', '.join(ISA_LIMITS)}")
    p.add_argument("--baseline", metavar="DIR", help="another checkout: its stream package runs the animestream, "
                                                     "live and teacher rows a second time")
    p.add_argument("--one", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    p.add_argument("--cap", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--deflicker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default="/tmp/animestream-bench", help="scratch folder")
    args = p.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.one:
        dst = str(Path(args.out) / f"{args.one}_{Path(args.style).stem}_{args.cap}.mp4")  # style may be a path
        device = "cpu" if args.one == "seed" else args.device
        extra = {"threads": args.threads, "deflicker": args.deflicker} if args.one == "live" else {}
        result = RUNNERS[args.one](args.input, dst, args.style, args.cap, args.frames, device, **extra)
        print(json.dumps({"config": args.one, "style": args.style, "max_side": args.cap, "cpu_class": _cpu_class(),
                          **result}), flush=True)
        return 0
    isas = [i for i in args.isa.split(",") if i]
    unknown = [i for i in isas if i not in ISA_LIMITS]
    if unknown:
        p.error(f"--isa {','.join(unknown)}: one of {', '.join(ISA_LIMITS)}")
    caps = [int(c) for c in args.caps.split(",") if c]
    for spec in filter(None, args.live.split(",")):
        try:
            _live_spec(spec)
        except ValueError as e:
            p.error(str(e))
    met = True
    for isa in isas:
        met &= all(m for _, _, m in _run_class(args, isa, caps).values())
    if args.device == "cuda":  # model-only fps at 512 and 1080p, 1080p file jobs, live at 512, vs the fp16 peak
        gpu = [sys.executable, str(Path(__file__).with_name("gpu.py")), "--style", args.style, "--device", "cuda"]
        print(subprocess.run(gpu, check=True, capture_output=True, text=True).stdout, end="", flush=True)
    print(json.dumps({"all_classes_met": met, "isa": isas}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
