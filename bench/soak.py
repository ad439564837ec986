"""Soak: conversions stopped by SIGINT, SIGTERM and SIGHUP at random moments, and batches whose Ray
workers are SIGKILLed at random moments, all under CPU load; counts what went wrong.

    python bench/soak.py [--runs 1000] [--batches 100] [--load 2] [--seed 0] [--style PATH|NAME]

Each of ``--runs`` conversions (a small clip with sound, ``animestream CLIP OUT``) gets one stop signal,
in turn SIGINT, SIGTERM and SIGHUP: one run in four at a random moment up to ``--max-delay`` seconds
after its start (start-up: imports, loading the style), the others at a random moment up to half that
after its first frames were converted. Each of ``--batches`` batches (``animestream batch`` over a few clips and a photo,
two workers) has ``--kills`` of its ``ray::Converter`` processes SIGKILLed, each at a random moment of
up to half ``--max-delay`` seconds after a worker runs (while loading, converting or between files). ``--load``
busy processes keep the CPUs loaded meanwhile. Without ``--style``, a random-weight style of a quarter
of the channels is made (the code paths are those of any style; only the model is small).

Prints one JSON line per run and per batch, then a summary line:
  crashes      a conversion that died of a fault (SIGSEGV: -11, SIGABRT: -6, SIGBUS, SIGILL, SIGFPE)
  other_signal one that died of another signal than the one sent (not a fault)
  killed       one that died of the signal sent itself: before its handlers were in place (the first
               moments of start-up) or after its job was done (the output is then complete)
  ignored      one that ran to its end with exit code 0 although the signal was sent (lost in start-up)
  errors       another positive exit code than 128 + the signal or 130 (stopped while starting), or a
               traceback
  unplayable   an output PyAV cannot open or decode to the end
  lost_frames  frames the run said it wrote that the output does not hold (summed)
  leftovers    temporary files (``.NAME.PID.partial.EXT``) left after the process ended
  lost_outputs a batch output missing or with fewer frames than its input (a batch must finish every
               file, however often its workers are killed)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
FAULTS = frozenset({signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE})
# "wrote 95 frames ..." (stopped) or "wrote PATH (600 frames, ...)" (finished)
WROTE = re.compile(r"wrote (?:.* \()?(\d+) frames")
PROGRESS = re.compile(rb"\d+/\d+ \[")  # tqdm's "  36/600 [": frames are being converted
STARTUP_SHARE = 4  # one run in this many is signalled during start-up, the others while converting


def make_clip(path: Path, frames: int, size: tuple[int, int] = (64, 48), fps: int = 24) -> Path:
    """An H.264 clip of moving colour bars with a stereo AAC tone."""
    import av

    width, height = size
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast"}
        audio = out.add_stream("aac", rate=44100)
        audio.layout = "stereo"
        x = np.arange(width)[None, :, None]
        samples_per_frame, t0 = 44100 // fps, 0
        for i in range(frames):
            image = np.broadcast_to(((x * 4 + i * 3) % 256).astype(np.uint8), (height, width, 3)).copy()
            image[..., 1] = (i * 7) % 256
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
            t = (np.arange(t0, t0 + samples_per_frame) / 44100.0).astype(np.float32)
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = 44100, t0, Fraction(1, 44100)
            t0 += samples_per_frame
            for packet in audio.encode(frame):
                out.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                out.mux(packet)
    return path


def make_style(folder: Path) -> Path:
    """A random-weight style with a quarter of the channels and one residual block."""
    import torch

    from stream import weights
    from stream.model import Generator

    torch.manual_seed(0)
    return weights.export_style(Generator(width=0.25, blocks=1).eval(), folder, "soak", source="soak",
                                license="MIT", training_steps=0, quality={})


def decoded_frames(path: Path) -> int | None:
    """Video frames PyAV decodes from ``path`` to the end, or None if it cannot."""
    import av

    try:
        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode(video=0))
    except (av.error.FFmpegError, IndexError, OSError):
        return None


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if ".partial" in p.name or ".piece" in p.name)


def _read(stream, into: bytearray) -> None:
    while chunk := stream.read1(4096):
        into.extend(chunk)


def _wait_for_progress(proc: subprocess.Popen, err: bytearray, limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s
    while proc.poll() is None and time.monotonic() < deadline and not PROGRESS.search(bytes(err)):
        time.sleep(0.02)


def one_run(i: int, clip: Path, style: str, work: Path, signum: int, delay: float, startup: bool) -> dict:
    """One conversion, signalled ``delay`` seconds after its start (``startup``) or after its first
    converted frames."""
    out_dir = work / f"run{i}"
    out_dir.mkdir()
    out = out_dir / "out.mp4"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    proc = subprocess.Popen([sys.executable, "-m", "stream", str(clip), str(out), "--style", style,
                             "--max-side", "64", "--threads", "1"], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = bytearray()
    reader = threading.Thread(target=_read, args=(proc.stderr, err))
    reader.start()
    try:
        if not startup:
            _wait_for_progress(proc, err)
        try:
            proc.wait(delay)
            sent = False  # it finished first
        except subprocess.TimeoutExpired:
            proc.send_signal(signum)
            sent = True
        rc = proc.wait(300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join()
    text = err.decode(errors="replace")
    row = {"run": i, "signal": signal.Signals(signum).name, "at": "start-up" if startup else "converting",
           "delay_s": round(delay, 2), "sent": sent, "rc": rc}
    claimed = [int(n) for n in WROTE.findall(text)]
    row["claimed"] = claimed[-1] if claimed else None
    row["decoded"] = decoded_frames(out) if out.exists() else None
    row["crash"] = rc < 0 and -rc in FAULTS
    row["other_signal"] = rc < 0 and -rc != signum and -rc not in FAULTS
    row["killed"] = rc == -signum
    row["ignored"] = sent and rc == 0  # the signal was lost: the job ran to its end
    row["error"] = (rc > 0 and rc not in {128 + signum, 130}) or "Traceback" in text
    row["unplayable"] = out.exists() and row["decoded"] is None
    row["lost_frames"] = max(0, (row["claimed"] or 0) - (row["decoded"] or 0))
    row["leftovers"] = partials(out_dir)
    if any(row[k] for k in ("crash", "other_signal", "ignored", "error", "unplayable", "lost_frames", "leftovers")):
        row["stderr_tail"] = text[-1500:]
    return row


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _converters(pid: int) -> list[int]:
    found = []
    for child in _descendants(pid):
        try:
            if b"ray::Converter" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            continue
    return found


def one_batch(i: int, inputs: Path, frames: dict[str, int], style: str, work: Path, kills: int,
              rng: random.Random, max_delay: float) -> dict:
    out = work / f"batch{i}"
    proc = subprocess.Popen([sys.executable, "-m", "stream", "batch", str(inputs), "--out", str(out), "--style",
                             style, "--workers", "2", "--max-side", "32", "--cpus-per-worker", "1", "-q"],
                            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = bytearray()
    reader = threading.Thread(target=_read, args=(proc.stderr, err))
    reader.start()
    killed = 0
    try:
        for _ in range(kills):  # each: once a worker runs, a random moment later, a random worker
            while proc.poll() is None and not _converters(proc.pid):
                time.sleep(0.05)
            time.sleep(rng.uniform(0, max_delay / 2))
            workers = _converters(proc.pid)
            if proc.poll() is not None:
                break
            if workers:
                try:
                    os.kill(rng.choice(workers), signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
        rc = proc.wait(900)
    finally:
        if proc.poll() is None:  # interrupted: a batch stopped by Ctrl-C shuts its Ray down itself
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join()
    text = err.decode(errors="replace")
    lost = []
    for name, count in frames.items():
        got = (1 if (out / name).exists() else 0) if name.endswith(".png") else (
            decoded_frames(out / name) if (out / name).exists() else None)
        if got != count:
            lost.append(f"{name}: {got} of {count}")
    row = {"batch": i, "kills": killed, "rc": rc, "lost_outputs": lost, "leftovers": partials(out),
           "crash": rc < 0, "error": rc != 0 or "Traceback" in text}
    if lost or row["error"] or row["leftovers"]:
        row["stderr_tail"] = text[-1500:]
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1000, help="signalled conversions")
    p.add_argument("--batches", type=int, default=100, help="batches with killed workers")
    p.add_argument("--kills", type=int, default=2, help="workers SIGKILLed per batch")
    p.add_argument("--load", type=int, default=os.cpu_count() or 1, help="busy processes meanwhile")
    p.add_argument("--frames", type=int, default=600, help="frames of the signalled clip (64x48, 24 fps)")
    p.add_argument("--max-delay", type=float, default=6.0, help="latest signal or kill, seconds after the start")
    p.add_argument("--style", default=None, help="a style name or file (default: a small random-weight one)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    t_start = time.perf_counter()
    loaders = [subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
               for _ in range(args.load)]
    totals = {"runs": 0, "signals_sent": 0, "while_converting": 0, "crashes": 0, "other_signal": 0,
              "killed": 0, "ignored": 0, "errors": 0, "unplayable": 0,
              "lost_frames": 0, "leftovers": 0, "batches": 0, "worker_kills": 0, "lost_outputs": 0,
              "batch_errors": 0, "batch_leftovers": 0}
    try:
        with tempfile.TemporaryDirectory(prefix="animestream-soak-") as tmp:
            work = Path(tmp)
            style = args.style or str(make_style(work))
            clip = make_clip(work / "clip.mp4", args.frames)
            for i in range(args.runs):
                startup = rng.randrange(STARTUP_SHARE) == 0
                delay = rng.uniform(0, args.max_delay if startup else args.max_delay / 2)
                row = one_run(i, clip, style, work, SIGNALS[i % len(SIGNALS)], delay, startup)
                print(json.dumps(row), flush=True)
                totals["runs"] += 1
                totals["signals_sent"] += row["sent"]
                totals["while_converting"] += row["sent"] and not startup
                for key in ("crash", "other_signal", "killed", "ignored", "error", "unplayable"):
                    totals[{"crash": "crashes", "error": "errors"}.get(key, key)] += bool(row[key])
                totals["lost_frames"] += row["lost_frames"]
                totals["leftovers"] += len(row["leftovers"])
            if args.batches:
                inputs = work / "batch_in"
                inputs.mkdir()
                frames = {}
                for n in range(4):
                    make_clip(inputs / f"clip{n}.mp4", 96 + 24 * n)
                    frames[f"clip{n}.mp4"] = 96 + 24 * n
                import cv2

                cv2.imwrite(str(inputs / "photo.png"), np.full((48, 64, 3), 128, np.uint8))
                frames["photo.png"] = 1
                for i in range(args.batches):
                    row = one_batch(i, inputs, frames, style, work, args.kills, rng, args.max_delay)
                    print(json.dumps(row), flush=True)
                    totals["batches"] += 1
                    totals["worker_kills"] += row["kills"]
                    totals["lost_outputs"] += len(row["lost_outputs"])
                    totals["batch_errors"] += bool(row["error"])
                    totals["batch_leftovers"] += len(row["leftovers"])
    finally:
        for proc in loaders:
            proc.kill()
            proc.wait()
    totals["load_processes"] = args.load
    totals["wall_s"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps({"summary": totals}), flush=True)
    bad = totals["crashes"] + totals["other_signal"] + totals["errors"] + totals["unplayable"]
    bad += totals["lost_frames"] + totals["leftovers"]
    bad += totals["lost_outputs"] + totals["batch_errors"] + totals["batch_leftovers"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
