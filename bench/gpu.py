"""GPU figures: each stage of a file job alone, the model alone, file jobs side by side with today's path,
and the live path, against a measured matmul peak.

    python bench/gpu.py [--style hayao] [--device cuda]          (what bench/gpu.sh runs on a GPU host)
    python bench/gpu.py --device cpu --quick                      (the same code on small sizes, anywhere)

One JSON line per measurement, then a targets line:

- ``matmul_peak``: fp16 (CUDA) or bf16 (CPU) TFLOP/s of a large matrix product on this device;
- ``stage``: each stage of a 1080p job alone, frames per second: decode (to planes; to rgb24 as today),
  upload+convert (planes to RGB on the device), model (resize, stylise, resize back, at the job's batch),
  download (yuv420p planes to the host), encode (x264 fed yuv420p, frame-threaded; fed rgb24 as today),
  and which stage bounds the job;
- ``rss_mb``: a GPU process's resident memory, in a fresh process each, after torch is imported, after
  ``torch.zeros(1, device="cuda")`` (the CUDA context alone), after the engine is built, after its warm-up
  and after a first batch of 1080p planes: with ``CUDA_MODULE_LOADING`` as torch leaves it and set to LAZY;
- ``model``: the generator alone (fp16, GroupNorm1 on CUDA), TorchScript (``scripted``: single frames) and
  eager (the batched file path), at 512x512, 512x288 (a 1080p job at cap 512) and 1920x1080; the eager
  one again with ``cudnn_benchmark``; compiled at 512x512 batch 8; each with its share of the matmul peak;
- ``file``: whole jobs (decode | device | encode, with sound), each in its own process so its peak RSS
  (``VmHWM``) is its own: 1080p at cap 512 and a 60-fps 1080p clip over 600 frames, 1080p at full
  resolution, 4K at cap 512 and cap 512 with ``--compile`` over 150; each with ``path`` ``planes`` (YUV on
  the device) and ``today`` (RGB frames on the host), and whether the two outputs have the same frames,
  timestamps and sound. ``job_fps`` is the whole ``convert_video`` call (what the targets compare),
  ``steady_fps`` the frames after the first batch over their time, ``pipeline_fps`` the pipeline's own;
  ``first_batch_s``, ``warm_s`` and ``engine_s`` say where a job's start-up goes;
- ``live``: the live path at cap 512 (a 640x480 30 fps clip played at camera pace), latency p50/p95.

Targets (one H200-class GPU): 1080p file job >= 120 fps at cap 512 and >= 30 fps at full resolution,
4K at cap 512 >= 60 fps, model compiled >= 500 fps at 512x512, peak host RSS <= 2 GB, outputs identical
in frames, timestamps and sound to today's, live p95 <= 30 ms.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
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


def _engine(style, device: str, **options) -> Engine:
    """An engine for the GPU path's code; on the CPU (``--quick``) in fp32, since that batched path runs the
    float module (an INT8 engine, which the policy may pick for a calibrated style there, has none)."""
    if device == "cpu":
        options.setdefault("precision", "fp32")
    return Engine(style, device=device, **options)


def matmul_peak(device: torch.device, quick: bool) -> float:
    """TFLOP/s of an n x n x n product in the device's fastest float precision: fp16 on CUDA, bf16 on a
    CPU class with native bf16, else fp32 (an emulated bf16 product would measure nothing useful)."""
    from stream import cpu

    n = 1024 if quick else 8192
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16 if cpu.current().has_bf16 else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    seconds = _time(lambda: a @ b, device, 3 if quick else 10)
    return 2 * n ** 3 / seconds / 1e12


def model_fps(engine: Engine, module, height: int, width: int, batch: int, repeat: int) -> float:
    x = torch.rand(batch, 3, height, width, device=engine.device).mul(2).sub(1).to(engine.dtype)
    with torch.inference_mode():
        seconds = _time(lambda: module(x), engine.device, repeat)
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


def _fps(frames: int, seconds: float) -> float:
    return round(frames / seconds, 1) if seconds > 0 else 0.0


def _median_s(fn, device: torch.device, repeat: int) -> float:
    return _time(fn, device, repeat)


def stage_rows(style: str, device: str, clip: Path, out: Path, max_side: int, repeat: int) -> list[dict]:
    """Each stage of a file job alone on ``clip``, frames per second (see the module docstring)."""
    import av

    from stream import yuv
    from stream.sinks import DEFAULT_CRF, DEFAULT_PRESET, VideoFileSink, encoder_threads
    from stream.sources import Frame

    rows, dev = [], torch.device(device)
    t0, c0 = time.perf_counter(), _cpu_s()
    with av.open(str(clip)) as f:
        f.streams.video[0].thread_type = "AUTO"
        decoded = [(fr.to_ndarray(), fr.pts, fr.format.name, int(fr.colorspace), int(fr.color_range))
                   for fr in f.decode(video=0)]
        time_base = f.streams.video[0].time_base
    rows.append({"stage": "decode", "to": "planes", "fps": _fps(len(decoded), time.perf_counter() - t0),
                 "cpu_ms_per_frame": _per_frame_ms(_cpu_s() - c0, len(decoded))})
    if dev.type == "cuda":
        rows.append(_nvdec_row(clip))
    t0 = time.perf_counter()
    with av.open(str(clip)) as f:
        f.streams.video[0].thread_type = "AUTO"
        count = sum(1 for fr in f.decode(video=0) if fr.to_ndarray(format="rgb24") is not None)
    rows.append({"stage": "decode", "to": "rgb24 (today)", "fps": _fps(count, time.perf_counter() - t0)})
    planes, _, name, colorspace, color_range = decoded[0]
    fmt = yuv.plane_format_of(name, colorspace, color_range)
    height, width = (planes.shape[1:] if not fmt.subsampled else (planes.shape[0] * 2 // 3, planes.shape[1]))
    engine = _engine(style, max_side=max_side, device=device)
    if dev.type == "cpu":
        engine.resizes_on_device = True  # the GPU path's arithmetic, on the CPU
    n = engine.fit_batch(width, height, len(decoded))
    host = torch.from_numpy(np.stack([d[0] for d in decoded[:n]]).view(np.int16 if fmt.bits > 8 else np.uint8))
    if dev.type == "cuda":
        host = host.pin_memory()
    with torch.inference_mode():
        seconds = _median_s(lambda: yuv.to_rgb(host.to(dev, non_blocking=True), fmt, height, width), dev, repeat)
        rows.append({"stage": "upload+convert", "batch": n, "fps": _fps(n, seconds)})
        rgb = yuv.to_rgb(host.to(dev), fmt, height, width)
        seconds = _median_s(lambda: engine.stylise_on_device(rgb.clone()), dev, repeat)
        rows.append({"stage": "model", "batch": n, "at": "x".join(map(str, engine.inference_shape(width, height))),
                     "fps": _fps(n, seconds)})
        packed = yuv.to_yuv420p(engine.stylise_on_device(rgb.clone()))
        back = torch.empty(packed.shape, dtype=torch.uint8, pin_memory=dev.type == "cuda")
        seconds = _median_s(lambda: back.copy_(packed, non_blocking=True), dev, repeat)
        rows.append({"stage": "download", "batch": n, "fps": _fps(n, seconds)})
    frames = [back[i % n].numpy() for i in range(len(decoded))]
    rows.append({"stage": "encode", "from": "yuv420p, frame threads", **_encode_planes(frames, decoded, out, width,
                                                                                        height, time_base)})
    sink = VideoFileSink(out / "stage_rgb.mp4", width=width, height=height, time_base=time_base, rate=Fraction(30),
                         crf=DEFAULT_CRF, preset=DEFAULT_PRESET, threads=encoder_threads(dev))
    rgb_frames = [np.ascontiguousarray(av.VideoFrame.from_ndarray(f, format="yuv420p").to_ndarray(format="rgb24"))
                  for f in frames[:n]]
    t0 = time.perf_counter()
    for i, d in enumerate(decoded):
        sink.write(Frame(i, rgb_frames[i % n], d[1], time_base, t0), rgb_frames[i % n])
    sink.close(keep=True)
    rows.append({"stage": "encode", "from": "rgb24 (today)", "fps": _fps(len(decoded), time.perf_counter() - t0)})
    new_path = [r for r in rows if r["stage"] in ("upload+convert", "model", "download")
                or r.get("to") == "planes" or str(r.get("from", "")).startswith("yuv420p")]
    slowest = min(new_path, key=lambda r: r["fps"])
    rows.append({"stage": "bottleneck", "is": slowest["stage"], "fps": slowest["fps"]})
    # decoding and encoding share the host's cores: at most cores / (their CPU per frame) together
    host = [r.get("cpu_ms_per_frame") for r in new_path if r["stage"] in ("decode", "encode")]
    if all(host):
        cores = os.cpu_count() or 1
        rows.append({"stage": "host cores", "cores": cores, "decode_plus_encode_cpu_ms": round(sum(host), 2),
                     "fps_at_most": _fps(cores, sum(host) / 1000)})
    return rows


def _cpu_s() -> float:
    """CPU seconds this process has used so far, every thread (FFmpeg's and x264's included)."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def _per_frame_ms(cpu_s: float, frames: int) -> float:
    return round(cpu_s / max(frames, 1) * 1000, 2)


_NVDEC = """
import json, resource, sys, time
import av
from av.codec.hwaccel import HWAccel
def cpu():
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime
t0, c0, names, count = time.perf_counter(), cpu(), set(), 0
with av.open(sys.argv[1], hwaccel=HWAccel("cuda", allow_software_fallback=False)) as f:
    for fr in f.decode(video=0):
        names.add(fr.format.name)
        count += fr.to_ndarray() is not None
print(json.dumps({"frames": count, "s": time.perf_counter() - t0, "cpu_s": cpu() - c0, "formats": sorted(names)}))
"""


def _nvdec_row(clip: Path) -> dict:
    """Decoding on the GPU's video decoder (FFmpeg's CUDA hwaccel; frames copied back as NV12 planes): its
    rate and the host CPU it leaves to x264, beside the software decoder's row. In a process of its own
    (PyAV alone), so that a driver problem there cannot stop this run."""
    import subprocess

    row = {"stage": "decode", "to": "planes, nvdec"}
    try:
        done = subprocess.run([sys.executable, "-c", _NVDEC, str(clip)], capture_output=True, text=True, timeout=60)
        got = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError, IndexError) as e:
        return {**row, "error": str(e)[:200]}
    if got is None:
        return {**row, "error": (done.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    return {**row, "fps": _fps(got["frames"], got["s"]), "cpu_ms_per_frame": _per_frame_ms(got["cpu_s"], got["frames"]),
            "formats": got["formats"]}


def _encode_planes(frames: list[np.ndarray], decoded: list, out: Path, width: int, height: int,
                   time_base: Fraction, preset: str | None = None) -> dict:
    """x264 as the plane path runs it: fed yuv420p, frame-threaded over every core."""
    from stream.devicejob import PlaneSink
    from stream.sinks import DEFAULT_PRESET
    from stream.sources import Frame

    sink = PlaneSink(out / "stage_yuv.mp4", width=width, height=height, time_base=time_base, rate=Fraction(30),
                     threads=0, preset=preset or DEFAULT_PRESET)
    t0, c0 = time.perf_counter(), _cpu_s()
    for i, (planes, d) in enumerate(zip(frames, decoded)):
        sink.write(Frame(i, planes, d[1], time_base, t0), planes)
    sink.close(keep=True)
    return {"fps": _fps(len(frames), time.perf_counter() - t0),
            "cpu_ms_per_frame": _per_frame_ms(_cpu_s() - c0, len(frames))}


def own_peak_rss_mb() -> float:
    """This process's own peak resident memory, MB (``VmHWM``). Not ``ru_maxrss``: a child started by
    ``subprocess`` (vfork, then exec) inherits its parent's resident size there, so every 1080p job of
    the first GPU run showed the parent's 6272 MB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


class _WriteClock:
    """When each frame reached the encoder and when the file was finished (perf_counter seconds): patched
    onto the sinks' classes for one job, so both paths are timed the same way."""

    def __init__(self):
        import stream.devicejob as devicejob
        import stream.sinks as sinks

        self.writes: list[float] = []
        self.closed = 0.0
        for cls in (sinks.VideoFileSink, devicejob.PlaneSink):
            write, close = cls.write, cls.close

            def timed_write(sink, frame, image, _write=write):
                _write(sink, frame, image)
                self.writes.append(time.perf_counter())

            def timed_close(sink, *, keep, _close=close):
                _close(sink, keep=keep)
                self.closed = self.closed or time.perf_counter()

            cls.write, cls.close = timed_write, timed_close


def file_job(job: dict) -> dict:
    """One file job, in this process (``--job``): ``path`` ``planes`` (YUV on the device) or ``today``.

    ``job_fps``: frames over the whole ``convert_video`` call (opening, the device warm-up, the pipeline,
    the encoder's flush): what a user waits for, the figure the targets compare. ``pipeline_fps``: frames
    over the pipeline's own run (``Stats.fps``). ``steady_fps``: the frames after the first batch over the
    time from the first batch's last frame at the encoder to the finished file. ``first_batch_s``: from
    the call to the first batch's last frame at the encoder; ``warm_s`` the warm-up inside the call;
    ``engine_s`` building the engine (model load, CUDA context), before the call. A job may name one
    variant of the defaults (:data:`VARIANTS`): ``batch``, ``cudnn_benchmark``, ``x264_threads``,
    ``decode_threads``, ``preset``, ``deflicker`` (the engine inside ``--deflicker``'s filter)."""
    with _variant(job):
        return _file_job(job)


@contextlib.contextmanager
def _variant(job: dict):
    """What a :data:`VARIANTS` job changes (module constants, x264's thread count as ``convert_video`` asks
    for it), changed for the job and put back after it."""
    import stream.engine as engine_module
    import stream.filejob as filejob
    import stream.sources as sources

    saved = engine_module.CUDNN_BENCHMARK_FRAMES, filejob.encoder_threads, sources.DECODE_THREADS_MAX
    try:
        if job.get("cudnn_benchmark"):
            engine_module.CUDNN_BENCHMARK_FRAMES = 0
        if job.get("x264_threads"):
            filejob.encoder_threads = lambda _device, n=job["x264_threads"]: n
        sources.DECODE_THREADS_MAX = job.get("decode_threads") or sources.DECODE_THREADS_MAX
        yield
    finally:
        engine_module.CUDNN_BENCHMARK_FRAMES, filejob.encoder_threads, sources.DECODE_THREADS_MAX = saved


class _RssSampler:
    """This process's resident memory split (``/proc/self/status``: anonymous, file-backed such as the CUDA
    libraries' pages, shared), MB, at the moment its total was highest; sampled every 50 ms on a thread."""

    FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem")

    def __init__(self):
        import threading

        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> dict[str, float]:
        with open("/proc/self/status") as f:
            got = {line.split(":")[0]: int(line.split()[1]) / 1024 for line in f
                   if line.split(":")[0] in self.FIELDS}
        return {k: round(got.get(k, 0.0), 1) for k in self.FIELDS}

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            now = self._sample()
            if now["VmRSS"] > self.peak.get("VmRSS", 0.0):
                self.peak = now

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return self.peak


def _file_job(job: dict) -> dict:
    import stream.filejob as filejob
    import stream.sources as sources
    from stream.sinks import DEFAULT_PRESET

    options = {"batch": job["batch"]} if job.get("batch") else {}
    t0 = time.perf_counter()
    engine = _engine(job["style"], max_side=job["max_side"], device=job["device"], compile=job.get("compile", False),
                     **options)
    if engine.device.type == "cpu":
        engine.resizes_on_device = True  # the GPU path's arithmetic, on the CPU
    engine.planes_on_device = job["path"] == "planes"
    clock = _WriteClock()
    sampler = _RssSampler()
    t1 = time.perf_counter()
    job_engine = engine
    if job.get("deflicker"):
        from stream.deflicker import Deflicker

        job_engine = Deflicker(engine)
    stats = convert_video(job["src"], job["dst"], job_engine, progress=False, duration=job.get("duration"),
                          preset=job.get("preset", DEFAULT_PRESET))
    seconds, n = time.perf_counter() - t1, engine.batch_size
    at_peak = sampler.stop()
    frames = stats.frames_out
    first = clock.writes[min(n, frames) - 1] if clock.writes else t1
    steady = (frames - n) / (clock.closed - first) if frames > n and clock.closed > first else 0.0
    return {"job_fps": round(frames / seconds, 2), "pipeline_fps": stats.fps, "steady_fps": round(steady, 2),
            "frames": frames, "batch": n, "first_batch_s": round(first - t1, 3),
            "warm_s": round(engine.warm_s, 2), "engine_s": round(t1 - t0, 2), "job_s": round(seconds, 3),
            "compile_s": round(engine.compile_s, 1), "compile": stats.extra.get("compile", ""),
            "peak_rss_mb": round(own_peak_rss_mb(), 1), "precision": engine.precision,
            "rss_at_peak_mb": at_peak,
            "x264_threads": filejob.encoder_threads(engine.device) or "x264's own (1.5 a core)",
            "decode_threads": min((os.cpu_count() or 1) + 1, sources.DECODE_THREADS_MAX),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark)}


def rss_steps(job: dict) -> dict:
    """This process's resident memory (MB) after each step of starting a GPU file job (``--rss``):
    torch imported, a CUDA context (``torch.zeros(1, device=...)``), the engine built, its warm-up for
    1080p at cap 512, a first batch of 1080p planes through the plane path's buffers, and encoder auto's
    probe of NVENC (FFmpeg opens a CUDA context of its own for it), with the seconds that probe took."""
    from stream import yuv
    from stream.devicejob import PlaneEngine, encoder_opens
    from stream.pipeline import current_rss_mb

    if job.get("module_loading", "(unset)") == "(unset)":
        os.environ.pop("CUDA_MODULE_LOADING", None)  # torch's own default, not stream.engine's setdefault
    rows = {"CUDA_MODULE_LOADING": job.get("module_loading", "(unset)"), "torch_imported": current_rss_mb()}
    device = torch.device(job["device"])
    torch.zeros(1, device=device)
    rows["cuda_context" if device.type == "cuda" else "device"] = current_rss_mb()
    rows["CUDA_MODULE_LOADING_then"] = os.environ.get("CUDA_MODULE_LOADING", "(unset)")
    engine = _engine(job["style"], max_side=job["max_side"], device=job["device"])
    if device.type == "cpu":
        engine.resizes_on_device = True
    rows["engine_built"] = current_rss_mb()
    width, height = job["size"]
    n = engine.fit_batch(width, height, 600)
    rows["engine_warm"] = current_rss_mb()
    planes = PlaneEngine(engine, yuv.PlaneFormat("yuv420p"), width, height)
    planes.submit([np.zeros((height * 3 // 2, width), np.uint8)] * n)()
    rows["first_batch"] = current_rss_mb()
    t0 = time.perf_counter()  # what encoder auto does once per process: try the hardware encoder
    rows["nvenc_opens"] = encoder_opens("h264_nvenc", width, height)
    rows["nvenc_probe_s"] = round(time.perf_counter() - t0, 3)
    rows["after_nvenc_probe"] = current_rss_mb()
    rows = {k: round(v, 1) if isinstance(v, float) and not k.endswith("_s") else v for k, v in rows.items()}
    return {**rows, "batch": n, "peak_rss_mb": round(own_peak_rss_mb(), 1)}


def file_job_in_child(job: dict, timeout: float, mode: str = "--job", env: dict | None = None) -> dict:
    """:func:`file_job` (or, ``mode`` ``--rss``, :func:`rss_steps`) in a fresh process, so that its peak RSS
    is its own; an error is a row too."""
    import subprocess

    try:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), mode, json.dumps(job)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(lines[-1])


def same_streams(a: Path, b: Path) -> bool:
    """Whether two outputs have the same video frame count and timestamps and the same sound packets."""
    import av

    def streams(path: Path):
        with av.open(str(path)) as f:
            video = sorted(p.pts for p in f.demux(video=0) if p.size)
        with av.open(str(path)) as f:
            sound = [(p.pts, p.size) for p in f.demux(audio=0) if p.size] if f.streams.audio else []
        return video, sound

    try:
        return streams(a) == streams(b)
    except (OSError, ValueError):
        return False


def live_job(style: str, device: str, src: Path, dst: Path, max_side: int) -> dict:
    from stream.live import StyleSwitcher
    from stream.livejob import LiveOptions, run_live

    engine = _engine(style, max_side=max_side, device=device)
    stats = run_live(str(src), StyleSwitcher([engine.spec], engine, engine.options), LiveOptions(output=dst),
                     announce=lambda _m: None)
    return {"fps": stats.fps, "latency_ms_p50": stats.latency_ms_p50, "latency_ms_p95": stats.latency_ms_p95,
            "dropped": stats.dropped, "frames": stats.frames_out}


def model_rows(args, peak: float, rows: dict, repeat: int, grid: bool = True) -> None:
    """The generator alone: TorchScript (``scripted``, what a single frame runs) and the eager module (what
    the batched file path runs), at 512x512, at a 1080p job's 512x288 and at 1920x1080 (``grid``); then the
    eager module with ``cudnn.benchmark`` (what file jobs of CUDNN_BENCHMARK_FRAMES or more set), then
    compiled, without and with ``cudnn.benchmark``."""
    engine = _engine(args.style, max_side=0, device=args.device)
    eager = engine._batch_module()
    big = (72, 128) if args.quick else (1080, 1920)
    cases = [(64, 64, 2), (36, 64, 2), (*big, 1)] if args.quick else [(512, 512, 1), (512, 512, 16), (288, 512, 16),
                                                                        (*big, 1), (*big, 2)]
    cuda = torch.device(args.device).type == "cuda"
    for h, w, batch in cases if grid else []:
        kinds = [("scripted", engine.module)] + ([("eager", eager)] if eager is not engine.module else [])
        for kind, module in kinds:
            fps = model_fps(engine, module, h, w, batch, repeat)
            _print_model(engine, kind, h, w, batch, fps, peak)
            rows[("model", kind, h, w, batch)] = fps
    if cuda:
        for h, w, batch in [(288, 512, 16), (*big, 1), (*big, 2)]:
            torch.backends.cudnn.benchmark = False
            plain = model_fps(engine, eager, h, w, batch, repeat)
            torch.backends.cudnn.benchmark = True
            t0 = time.perf_counter()
            model_fps(engine, eager, h, w, batch, 1)  # three calls, the first searching (once per shape)
            search_s = time.perf_counter() - t0
            fps = model_fps(engine, eager, h, w, batch, repeat)
            _print_model(engine, "eager", h, w, batch, fps, peak, cudnn_benchmark=True,
                         first_calls_s=round(search_s, 2), without_search_fps=round(plain, 1))
        torch.backends.cudnn.benchmark = False
    del engine, eager
    if not cuda:
        print(json.dumps({"model_compiled": "skipped: torch.compile is timed on CUDA only"}), flush=True)
        return
    compiled = _engine(args.style, max_side=0, device=args.device, compile=True, batch=8)
    compiled.fit_batch(512, 512)  # compiles and warms batches of 8 frames of 512x512
    fps = model_fps(compiled, compiled._compiled_module, 512, 512, 8, repeat)
    _print_model(compiled, "compiled", 512, 512, 8, fps, peak, compile_s=round(compiled.compile_s, 1))
    rows["model_compiled_512"] = fps
    torch.backends.cudnn.benchmark = True
    model_fps(compiled, compiled._compiled_module, 512, 512, 8, 1)  # the search
    fps = model_fps(compiled, compiled._compiled_module, 512, 512, 8, repeat)
    torch.backends.cudnn.benchmark = False
    _print_model(compiled, "compiled", 512, 512, 8, fps, peak, cudnn_benchmark=True)
    rows["model_compiled_512_cudnn"] = fps
    del compiled
    auto = _engine(args.style, max_side=0, device=args.device, compile=True)  # the engine's own batch there
    try:
        n = auto.fit_batch(512, 512, frames=10**6)  # a job long enough to compile
        fps = model_fps(auto, auto._compiled_module, 512, 512, n, repeat)
    except RuntimeError as e:  # torch's and dynamo's errors: a row, not the end of the run
        print(json.dumps({"model": "512x512", "kind": "compiled", "what": "the automatic batch",
                          "error": str(e)[:300]}), flush=True)
        return
    _print_model(auto, "compiled", 512, 512, n, fps, peak, compile_s=round(auto.compile_s, 1),
                 cudnn_benchmark=bool(torch.backends.cudnn.benchmark), what="the automatic batch, a long job")
    rows["model_compiled_512_auto"] = fps


def _print_model(engine: Engine, kind: str, h: int, w: int, batch: int, fps: float, peak: float, **extra) -> None:
    share = fps * h * w * FLOPS_PER_PIXEL * engine.spec.architecture["width"] ** 2 / (peak * 1e12)
    print(json.dumps({"model": f"{w}x{h}", "kind": kind, "batch": batch, "fps": round(fps, 1),
                      "precision": engine.precision, "share_of_matmul_peak": round(share, 3), **extra}), flush=True)


# (clip, label, cap, --compile, whole clip, today's path too): the 1080p cap-512 and 60-fps jobs run the whole
# 600-frame clips, where a job's start-up weighs little; the others a quarter of that (150 frames; the 4K clip
# is that long). Today's path runs beside the two 1080p jobs only (4K and 60 fps: 10.0 and 29.0 fps, 8017 MB
# at 4K, in the first GPU run), to keep bench/gpu.sh within its time.
JOBS = [("1080p", "cap512", True, False, True, True), ("1080p", "full", False, False, False, True),
        ("4k", "cap512", True, False, False, False), ("1080p60", "cap512", True, False, True, False),
        ("1080p", "cap512+compile", True, True, False, False)]
FPS_MEASURE = ("job_fps: frames over the whole convert_video call (device warm-up and encoder flush included); "
               "steady_fps: the frames after the first batch over their time")


def _run_job(args, clip: Path, dst: Path, capped: bool, seconds: float | None, **job) -> dict:
    """One file job of ``clip`` (its first ``seconds``, None: whole) into ``dst`` at the run's cap or full size:
    in its own process (its own peak RSS); with --quick in this one (fast, errors show)."""
    job = {"style": args.style, "device": args.device, "src": str(clip), "dst": str(dst),
           "max_side": (64 if args.quick else 512) if capped else 0, "duration": seconds, **job}
    return file_job(job) if args.quick else file_job_in_child(job, timeout=args.job_timeout)


def file_rows(args, out: Path, clips: dict, rows: dict, short: int) -> None:
    """The whole jobs, the plane path and today's side by side (see the module docstring); a job that does
    not take its whole clip takes its first ``short`` frames."""
    for clip, label, capped, compile_it, whole, today in JOBS:
        seconds = None if whole else (short - 0.5) / (60 if clip == "1080p60" else 30)
        paths = ("planes", "today") if today else ("planes",)
        for path in paths:
            row = _run_job(args, clips[clip], out / f"{clip}_{label}_{path}.mp4", capped, seconds,
                           compile=compile_it, path=path)
            rows[("file", clip, label, path)] = row
            print(json.dumps({"file": clip, "cap": label, "path": path, **row}), flush=True)
        if len(paths) == 2:
            same = same_streams(out / f"{clip}_{label}_planes.mp4", out / f"{clip}_{label}_today.mp4")
            rows[("same", clip, label)] = same
            print(json.dumps({"file": clip, "cap": label, "same_frames_timestamps_sound": same}), flush=True)


# One change to the defaults at a time (and two together), each job in its own process like file_rows':
# (clip, cap 512?, whole clip?, label, the change). Full resolution: one frame a call instead of the
# automatic two, cuDNN's algorithm search. Memory: fewer x264 frame threads and decoder threads (each
# holds frames of its own: at 1080p x264 grew 713 MB with 24 threads, its own pick on 16 cores, and 534
# with 16; `python bench/hostmem.py --x264 24,16` on a 2-core avx512-bf16 machine). 4K: x264's next
# faster preset. --deflicker: its filter on the device, beside the same job on the RGB path, where the
# filter runs on the host a frame at a time (as before it ran on the device).
VARIANTS = [("1080p", False, False, "full b1", {"batch": 1}),
            ("1080p", False, False, "full cudnn", {"cudnn_benchmark": True}),
            ("1080p", False, False, "full b1 cudnn", {"batch": 1, "cudnn_benchmark": True}),
            ("1080p", False, True, "full 600", {}),
            ("1080p", False, True, "full b1 cudnn 600", {"batch": 1, "cudnn_benchmark": True}),
            ("1080p", True, True, "cap512 x264=16 decode=8", {"x264_threads": 16, "decode_threads": 8}),
            ("1080p", True, True, "cap512 x264=12 decode=8", {"x264_threads": 12, "decode_threads": 8}),
            ("1080p", True, True, "cap512 x264=8 decode=8", {"x264_threads": 8, "decode_threads": 8}),
            ("1080p", True, True, "cap512 cudnn", {"cudnn_benchmark": True}),
            ("4k", True, False, "4k superfast", {"preset": "superfast"}),
            ("4k", True, False, "4k x264=12 decode=8", {"x264_threads": 12, "decode_threads": 8}),
            ("4k", True, False, "4k superfast decode=8", {"preset": "superfast", "decode_threads": 8}),
            ("1080p", True, False, "cap512 deflicker", {"deflicker": True}),
            ("1080p", True, False, "cap512 deflicker rgb", {"deflicker": True, "path": "today"}),
            ("1080p", False, False, "full deflicker", {"deflicker": True})]


def variant_rows(args, out: Path, clips: dict, rows: dict, short: int) -> None:
    """:data:`VARIANTS`, the plane path, each in its own process; 150-frame jobs take the first ``short``
    frames of their clip."""
    wanted = set(args.variants.split(",")) if args.variants else None
    for clip, capped, whole, label, change in VARIANTS:
        if wanted is not None and label not in wanted:
            continue
        row = _run_job(args, clips[clip], out / f"variant_{label.replace(' ', '_')}.mp4", capped,
                       None if whole else (short - 0.5) / 30, **{"path": "planes", **change})
        rows[("variant", label)] = row
        print(json.dumps({"variant": label, "file": clip, "change": change, **row}), flush=True)


def encode_rows(clip: Path, out: Path, presets: tuple[str, ...]) -> list[dict]:
    """x264 alone on ``clip``'s own decoded planes (a 4K clip: what bounds a 4K job at cap 512), fed
    yuv420p and frame-threaded as the plane path runs it, at each of ``presets``; and decoding alone."""
    import av

    from stream.sinks import DEFAULT_PRESET

    rows = []
    t0, c0 = time.perf_counter(), _cpu_s()
    with av.open(str(clip)) as f:
        f.streams.video[0].thread_type = "AUTO"
        decoded = [(fr.to_ndarray(format="yuv420p"), fr.pts) for fr in f.decode(video=0)]
        time_base = f.streams.video[0].time_base
    height, width = decoded[0][0].shape[0] * 2 // 3, decoded[0][0].shape[1]
    rows.append({"stage": "decode", "to": "planes", "size": f"{width}x{height}",
                 "fps": _fps(len(decoded), time.perf_counter() - t0),
                 "cpu_ms_per_frame": _per_frame_ms(_cpu_s() - c0, len(decoded))})
    for preset in presets:
        row = _encode_planes([d[0] for d in decoded], decoded, out, width, height, time_base,
                             preset=preset or DEFAULT_PRESET)
        rows.append({"stage": "encode", "from": "yuv420p, frame threads", "size": f"{width}x{height}",
                     "preset": preset or DEFAULT_PRESET, **row})
    return rows


def rss_rows(args, rows: dict) -> None:
    """What a GPU process holds before and after our buffers, each in a fresh process: with the environment
    as it is, and with ``CUDA_MODULE_LOADING=LAZY`` set before torch starts CUDA (as ``stream.engine`` sets it
    where unset)."""
    job = {"style": args.style, "device": args.device, "max_side": 64 if args.quick else 512,
           "size": [128, 72] if args.quick else [1920, 1080]}
    plain = {k: v for k, v in os.environ.items() if k != "CUDA_MODULE_LOADING"}
    for name, env in (("unset", plain), ("lazy", {**plain, "CUDA_MODULE_LOADING": "LAZY"})):
        job["module_loading"] = env.get("CUDA_MODULE_LOADING", "(unset)")  # as the child's environment starts
        row = rss_steps(job) if args.quick else file_job_in_child(job, args.job_timeout, "--rss", env)
        rows[("rss", name)] = row
        print(json.dumps({"rss_mb": name, **row}), flush=True)


def targets(rows: dict) -> dict:
    def fps(clip: str, label: str, path: str = "planes", key: str = "job_fps") -> float:
        return float(rows.get(("file", clip, label, path), {}).get(key) or 0.0)

    rss = [r.get("peak_rss_mb") or 0.0 for k, r in rows.items() if k[0] == "file" and k[3] == "planes"]
    today_rss = [r.get("peak_rss_mb") or 0.0 for k, r in rows.items() if k[0] == "file" and k[3] == "today"]
    jobs = {"file_fps_1080p_cap512": ("1080p", "cap512", ">= 120"), "file_fps_1080p_full": ("1080p", "full", ">= 30"),
            "file_fps_4k_cap512": ("4k", "cap512", ">= 60"), "file_fps_1080p60_cap512": ("1080p60", "cap512", ">= 120")}
    found = {name: (fps(clip, label), fps(clip, label, "today"), goal) for name, (clip, label, goal) in jobs.items()}
    # what a job long enough to compile runs: the engine's automatic batch, cuDNN's algorithms searched
    compiled = (rows.get("model_compiled_512_auto") or rows.get("model_compiled_512_cudnn")
                or rows.get("model_compiled_512", 0.0))
    found.update({"model_fps_512_compiled": (compiled, None, ">= 500"),
                  "peak_rss_mb": (max(rss or [0.0]), max(today_rss or [0.0]), "<= 2048"),
                  "live_p95_ms_512": (rows.get("live_p95", 0.0), None, "<= 30")})
    # --compile (skipped for 150 frames) against the same path without it: steady rates, as the cap-512
    # job runs 600 frames
    plain = fps("1080p", "cap512", key="steady_fps")
    found["file_fps_1080p_cap512_compile"] = (fps("1080p", "cap512+compile", key="steady_fps"), plain,
                                              f">= {plain * 0.95:.1f}")
    out = {}
    for name, (value, today, goal) in found.items():
        bound = float(goal[3:])
        met = value >= bound if goal.startswith(">=") else 0 < value <= bound
        out[name] = {"value": round(value, 1), "today": None if today is None else round(today, 1), "goal": goal,
                     "met": met}
        if name in jobs:
            clip, label, _ = jobs[name]
            if not today:
                out[name]["today"] = None  # not run beside it here (see JOBS)
            row = rows.get(("file", clip, label, "planes"), {})
            out[name].update(measure="job_fps", frames=row.get("frames"), steady_fps=row.get("steady_fps"))
    out["file_fps_1080p_cap512_compile"]["measure"] = "steady_fps, 150 frames, against the cap-512 job's"
    same = [v for k, v in rows.items() if k[0] == "same"]
    out["same_frames_timestamps_sound"] = {"value": bool(same) and all(same), "goal": "true",
                                           "met": bool(same) and all(same)}
    return out


SECTIONS = ("rss", "stages", "models", "files", "live", "variants", "stages4k", "fastmodels")
DEFAULT_SECTIONS = ("rss", "stages", "models", "files", "live")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--style", default="hayao")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--quick", action="store_true", help="small sizes and few frames: checks the code, measures nothing")
    p.add_argument("--frames", type=int, default=0, help="frames per clip (default 600; --quick: 40)")
    p.add_argument("--job-timeout", type=float, default=120.0, help="seconds one file job may take")
    p.add_argument("--out", type=Path, default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--sections", default=",".join(DEFAULT_SECTIONS),
                   help=f"comma-separated parts to run, of {','.join(SECTIONS)} (default: %(default)s; a short GPU "
                        "lease runs fewer)")
    p.add_argument("--variants", default="", help="comma-separated labels of VARIANTS to run (default: all)")
    p.add_argument("--job", help=argparse.SUPPRESS)  # one file job, as JSON (file_job_in_child)
    p.add_argument("--rss", help=argparse.SUPPRESS)  # rss_steps, as JSON (file_job_in_child)
    args = p.parse_args(argv)
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        p.error(f"--sections: no such part {', '.join(sorted(unknown))} (have: {', '.join(SECTIONS)})")
    if args.job or args.rss:
        print(json.dumps(file_job(json.loads(args.job)) if args.job else rss_steps(json.loads(args.rss))), flush=True)
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device"}))
        return 1
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    out = args.out or Path(tempfile.mkdtemp(prefix="animestream-gpu-"))
    out.mkdir(parents=True, exist_ok=True)
    repeat = 3 if args.quick else 12
    frames = args.frames or (40 if args.quick else 600)

    peak = matmul_peak(device, args.quick)
    print(json.dumps({"matmul_peak_tflops": round(peak, 3), "device": name, "torch": torch.__version__}), flush=True)
    hd, uhd = ((128, 72), (256, 144)) if args.quick else ((1920, 1080), (3840, 2160))
    short = max(1, frames // 4)  # the 150-frame clips (4K) and jobs (1080p at full size, --compile)
    clips = {"1080p": make_clip(out / "in_1080p.mp4", *hd, frames),
             "4k": make_clip(out / "in_4k.mp4", *uhd, short),
             "1080p60": make_clip(out / "in_1080p60.mp4", *hd, frames, fps=60)}
    stage_clip = make_clip(out / "stage_1080p.mp4", *hd, short)
    rows: dict = {}
    sections = set(args.sections.split(","))
    if "rss" in sections:
        rss_rows(args, rows)
    if "stages" in sections:
        for row in stage_rows(args.style, args.device, stage_clip, out, 64 if args.quick else 512, repeat):
            print(json.dumps(row), flush=True)
    if "stages4k" in sections:
        for row in encode_rows(clips["4k"], out, ("", "superfast")):
            print(json.dumps(row), flush=True)
    if "models" in sections or "fastmodels" in sections:
        model_rows(args, peak, rows, repeat, grid="models" in sections)
    if "files" in sections:
        file_rows(args, out, clips, rows, short)
    if "variants" in sections:
        variant_rows(args, out, clips, rows, short)
    if "live" in sections:
        live_clip = make_clip(out / "live.mp4", *((160, 120) if args.quick else (640, 480)), 30 if args.quick else 180)
        row = live_job(args.style, args.device, live_clip, out / "live_rec.mp4", 64 if args.quick else 512)
        rows["live_p95"] = row["latency_ms_p95"]
        print(json.dumps({"live": "cap512" if not args.quick else "cap64", **row}), flush=True)
    found = targets(rows)
    print(json.dumps({"targets": found, "all_met": all(t["met"] for t in found.values()), "fps": FPS_MEASURE,
                      "measured": not args.quick}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
