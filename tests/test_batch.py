"""animestream batch on a real local Ray: mixed inputs, a worker killed mid-file, resume, a film in pieces."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

import media
from stream import segments
from stream.deflicker import Deflicker
from stream.engine import Engine
from stream.filejob import convert_video

pytest.importorskip("ray")

COMMON = ["--max-side", "32", "--cpus-per-worker", "1", "-q"]


def _ray_processes() -> list[str]:
    """Ray's processes still running. A zombie (``Z``: exited, not yet reaped, as a killed worker stays
    until its orphan is reaped, slower on a loaded machine) runs nothing and is left out."""
    out = subprocess.run(["ps", "-eo", "pid,stat,args"], capture_output=True, text=True).stdout.splitlines()
    return [line for line in out if ("raylet" in line or "gcs_server" in line or "ray::" in line)
            and "ps -eo" not in line and not line.split()[1].startswith("Z")]


@pytest.fixture
def no_ray_left():
    yield
    deadline = time.monotonic() + 20
    while _ray_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _ray_processes() == []


def _batch(*args: object, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "stream", "batch", *map(str, args)], cwd=media.ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


def _report(path: Path) -> dict[str, dict]:
    return {Path(r["input"]).name: r for r in map(json.loads, path.read_text().splitlines())}


def test_a_batch_of_good_and_bad_files_reports_each_and_resumes(tmp_path, clip, tiny_style, no_ray_left):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copy(clip, src / "a.mp4")
    media.write_image(src / "sub" / "b.png")
    (src / "broken.mp4").write_bytes(b"not a video" * 100)
    out, report = tmp_path / "out", tmp_path / "report.jsonl"
    done = _batch(src, "--out", out, "--style", tiny_style, "--workers", 2, "--report", report, *COMMON)
    assert done.returncode == 1, done.stderr  # something failed, the rest went on
    rows = _report(report)
    assert {k: r["status"] for k, r in rows.items()} == {"a.mp4": "done", "b.png": "done", "broken.mp4": "failed"}
    assert rows["a.mp4"]["frames"] == 30 and rows["a.mp4"]["worker"] and "broken.mp4" in rows["broken.mp4"]["error"]
    assert "2 converted, 0 already there, 1 failed" in done.stderr and "Traceback" not in done.stderr
    assert media.probe(out / "a.mp4").times == media.probe(clip).times
    assert (out / "sub" / "b.png").exists() and media.partial_files(out) == []
    mtime = (out / "a.mp4").stat().st_mtime_ns
    (out / "sub" / "b.png").unlink()
    again = _batch(src, "--out", out, "--style", tiny_style, "--report", report, *COMMON)
    rows = _report(report)
    assert rows["a.mp4"]["status"] == "skipped" and rows["b.png"]["status"] == "done"
    assert (out / "a.mp4").stat().st_mtime_ns == mtime  # no work done twice
    assert again.returncode == 1  # the broken input is still broken


def test_a_long_clip_in_three_pieces_equals_the_single_process_output(tmp_path, tiny_style, no_ray_left):
    src = media.write_clip(tmp_path / "film.mkv", frames=72, size=(64, 48), fps=24, keyint=24, audio="pcm_s16le",
                           preset="veryfast")
    assert len(segments.plan(src, 1.0)) == 3
    out = tmp_path / "out"
    done = _batch(src, "--out", out, "--style", tiny_style, "--workers", 2, "--segment", 1.0,
                  "--report", tmp_path / "r.jsonl", *COMMON)
    assert done.returncode == 0, done.stderr
    assert _report(tmp_path / "r.jsonl")["film.mkv"]["pieces"] == 3
    single = tmp_path / "single.mkv"
    convert_video(src, single, Engine(tiny_style, max_side=32, device="cpu", threads=1), progress=False)
    a, b = media.probe(out / "film.mkv"), media.probe(single)
    assert a.frames == b.frames == 72 and a.times == b.times
    assert (a.audio_codec, a.audio_duration) == (b.audio_codec, b.audio_duration)
    with av.open(str(out / "film.mkv")) as c, av.open(str(single)) as d:
        assert [bytes(p) for p in c.demux(c.streams.audio[0])] == [bytes(p) for p in d.demux(d.streams.audio[0])]
    assert sorted(p.name for p in out.iterdir()) == ["film.mkv"]  # the pieces are gone


def _noisy_still_film(path: Path, frames: int = 72) -> Path:
    """A still textured scene under fresh sensor noise each frame, a key frame every second (24 fps)."""
    rng = np.random.default_rng(1)
    scene = media.noise_image(3, 64, 96)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
        video.options = {"crf": "18", "g": "24", "keyint_min": "24", "sc_threshold": "0", "preset": "veryfast"}
        for i in range(frames):
            noisy = np.clip(scene.astype(int) + rng.integers(-5, 6, scene.shape), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(noisy, format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path


def test_deflicker_pieces_warm_up_on_the_pictures_before_them(tmp_path, tiny_style):
    """A piece after the first runs the filter on the pictures before it (written by the piece before) and
    writes none of them: the cut no longer shows as a jump where the filtered picture holds still."""
    src = _noisy_still_film(tmp_path / "film.mkv")
    plan = segments.plan(src, 1.0)
    assert [(p.first, p.warm) for p in plan] == [(0, None), (1000, 0), (2000, 1000)]  # ticks of 1/1000 s
    engine = Engine(tiny_style, max_side=64, device="cpu", threads=1)
    convert_video(src, tmp_path / "single.mkv", Deflicker(engine), progress=False, crf=0)
    single = [f.astype(int) for f in media.decoded_frames(tmp_path / "single.mkv")]
    jumps = {}
    for preroll in (0, segments.PREROLL_FRAMES):
        parts = []
        for piece in plan:
            stats = segments.convert_piece(src, tmp_path / "out.mkv", piece, Deflicker(engine), crf=0,
                                           preroll=preroll)
            assert stats.frames_out == 24 and stats.extra["preroll_frames"] == (24 if preroll and piece.index else 0)
            parts.append(piece.name(tmp_path / "out.mkv"))
        joined = tmp_path / f"joined{preroll}.mkv"
        assert segments.join(src, parts, joined) == 72
        assert media.probe(joined).times == media.probe(tmp_path / "single.mkv").times
        got = [f.astype(int) for f in media.decoded_frames(joined)]
        jumps[preroll] = [np.abs(got[i] - got[i - 1]).mean() for i in (24, 48)]
        if preroll:  # the second piece warmed up from the very first picture: the single command's frames
            assert all((a == b).all() for a, b in zip(got[24:48], single[24:48]))
    held = np.median([np.abs(b - a).mean() for a, b in zip(single, single[1:])])
    assert held < 0.1 and min(jumps[0]) > 1.5  # the filtered picture holds still; a cold cut jumps
    assert jumps[segments.PREROLL_FRAMES][0] < 0.3 * jumps[0][0]
    assert jumps[segments.PREROLL_FRAMES][1] < 0.9 * jumps[0][1]


def test_deflicker_in_a_batch_is_the_single_commands_and_warms_up_across_each_cut(tmp_path, tiny_style,
                                                                                  no_ray_left):
    src = _noisy_still_film(tmp_path / "film.mkv")
    out = tmp_path / "out"
    done = _batch(src, "--out", out, "--style", tiny_style, "--max-side", 64, "--workers", 2, "--segment", 1.0,
                  "--deflicker", "--device", "cpu", "--crf", 0, "--cpus-per-worker", 1, "-q")
    assert done.returncode == 0, done.stderr
    engine = Engine(tiny_style, max_side=64, device="cpu", threads=1)
    steady, plain = tmp_path / "steady.mkv", tmp_path / "plain.mkv"
    convert_video(src, steady, Deflicker(engine), progress=False, crf=0)
    convert_video(src, plain, engine, progress=False, crf=0)
    got, want, unfiltered = ([f.astype(int) for f in media.decoded_frames(p)] for p in (out / "film.mkv", steady,
                                                                                          plain))
    assert len(got) == len(want) == 72
    assert all((a == b).all() for a, b in zip(got[:48], want[:48]))  # the second piece warmed up from frame 0
    def held(frames):  # median change from frame to frame within the third piece
        return np.median([np.abs(b - a).mean() for a, b in zip(frames[48:], frames[49:])])

    assert held(got) < 0.2 * held(unfiltered)  # the third piece filtered too (its history began elsewhere)


def test_a_worker_killed_mid_file_is_retried_and_every_output_is_right(tmp_path, tiny_style, no_ray_left):
    src = tmp_path / "in"
    src.mkdir()
    clip = media.write_clip(src / "a.mp4", frames=600)
    shutil.copy(clip, src / "b.mp4")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "stream", "batch", str(src), "--out", str(out), "--style",
                             str(tiny_style), "--workers", "2", "--segment", "1000", *COMMON], cwd=media.ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = []

    def kill_one_worker():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            if any(p.name.startswith(".") and ".partial" in p.name for p in out.glob(".*")):  # mid-file
                for line in _ray_processes():
                    if "ray::Converter" in line:
                        os.kill(int(line.split()[0]), signal.SIGKILL)
                        killed.append(line)
                        return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    _, err = proc.communicate(timeout=600)
    killer.join()
    assert killed, "no worker was caught mid-file"
    assert proc.returncode == 0, err
    for name in ("a.mp4", "b.mp4"):
        got = media.probe(out / name)
        assert got.frames == 600 and got.times == media.probe(clip).times
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.mp4"]  # no partial file left behind


def test_without_ray_the_batch_command_says_how_to_get_it(monkeypatch, cli, tmp_path, capsys):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    rc, _, err = cli("batch", media.write_image(tmp_path / "a.png"), "--out", tmp_path / "out")
    assert rc == 1 and err.count("\n") == 1 and "pip install 'animestream[ray]'" in err


# -- workers killed at each point of their work (a test hook, see stream.batch._die_here), one Ray for all


@pytest.fixture(scope="module")
def kill_ray(tmp_path_factory):
    """A local Ray whose workers read a kill plan (written by each test) from one path."""
    import ray

    from stream.batch import KILL_PLAN_ENV

    plan = tmp_path_factory.mktemp("kills") / "plan.json"
    old = os.environ.get(KILL_PLAN_ENV)
    os.environ[KILL_PLAN_ENV] = str(plan)  # before ray.init: the workers inherit it
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield plan
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop(KILL_PLAN_ENV, None)
        else:
            os.environ[KILL_PLAN_ENV] = old


@pytest.fixture(scope="module")
def kill_inputs(tmp_path_factory):
    """Two clips with sound, a photo and a film that runs as three pieces (``--segment 1``)."""
    src = tmp_path_factory.mktemp("kill_inputs")
    media.write_clip(src / "a.mp4", frames=48)
    media.write_clip(src / "b.mp4", frames=36, size=(48, 64))
    media.write_image(src / "c.png")
    media.write_clip(src / "film.mkv", frames=72, keyint=24, audio="pcm_s16le", preset="veryfast")
    return src


def _run_with_kills(src: Path, out: Path, plan: Path, style: Path, kills: list[dict]):
    from stream.batch import BatchOptions, run_batch
    from stream.engine import EngineOptions

    marks = out.with_name(out.name + "-marks")
    marks.mkdir()
    plan.write_text(json.dumps({"marks": str(marks), "kills": kills}))
    options = BatchOptions(out=out, style=str(style), workers=2, cpus_per_worker=1, segment_s=1.0,
                           engine=EngineOptions(max_side=32, threads=1, device="cpu"))
    outcomes = {Path(o.input).name: o for o in run_batch([str(src)], options, progress=False, warn=lambda _m: None)}
    return outcomes, sorted(p.name for p in marks.iterdir())


def _decoded(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24").tobytes() for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def unkilled(kill_ray, kill_inputs, tiny_style, tmp_path_factory):
    out = tmp_path_factory.mktemp("unkilled") / "out"
    outcomes, _ = _run_with_kills(kill_inputs, out, kill_ray, tiny_style, [])
    assert {k: o.status for k, o in outcomes.items()} == dict.fromkeys(["a.mp4", "b.mp4", "c.png", "film.mkv"], "done")
    return out


KILLS = [  # where workers die: every point of a worker's life, in one batch
    {"point": "init", "times": 1},  # while loading its engine
    {"point": "mid", "job": "a.mp4", "times": 1},  # mid-file (its temporary output half written)
    {"point": "end", "job": "b.mp4", "times": 1},  # between files: the output is in place, the answer lost
    {"point": "start", "job": "c.png", "times": 1},  # between files: before starting the next one
    {"point": "mid", "job": "film.mkv#1", "times": 2},  # during a piece of a film, twice
]


def test_workers_killed_at_every_point_are_replaced_and_every_output_equals_an_unkilled_run(
        kill_ray, kill_inputs, unkilled, tiny_style, tmp_path):
    out = tmp_path / "out"
    outcomes, deaths = _run_with_kills(kill_inputs, out, kill_ray, tiny_style, KILLS)
    assert len(deaths) == sum(k["times"] for k in KILLS)  # every planned death happened
    assert {k: o.status for k, o in outcomes.items()} == dict.fromkeys(["a.mp4", "b.mp4", "c.png", "film.mkv"], "done")
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.mp4", "c.png", "film.mkv"]  # no leftovers
    for name in ("a.mp4", "b.mp4", "film.mkv"):
        assert media.probe(out / name).times == media.probe(unkilled / name).times
        assert _decoded(out / name) == _decoded(unkilled / name), name
    assert (out / "c.png").read_bytes() == (unkilled / "c.png").read_bytes()
    assert outcomes["film.mkv"].frames == 72


def test_a_job_that_kills_every_worker_fails_alone(kill_ray, kill_inputs, unkilled, tiny_style, tmp_path):
    from stream.batch import RETRIES

    out = tmp_path / "out"
    outcomes, deaths = _run_with_kills(kill_inputs, out, kill_ray, tiny_style,
                                       [{"point": "mid", "job": "a.mp4", "times": -1}])
    assert {k: o.status for k, o in outcomes.items()} == {"a.mp4": "failed", "b.mp4": "done", "c.png": "done",
                                                          "film.mkv": "done"}
    assert f"its worker died {RETRIES + 1} times" in outcomes["a.mp4"].error
    assert sorted(p.name for p in out.iterdir()) == ["b.mp4", "c.png", "film.mkv"]  # nothing half-written
    assert _decoded(out / "b.mp4") == _decoded(unkilled / "b.mp4")
