"""Stopping a job: Ctrl-C, SIGTERM and SIGHUP keep a playable file of the frames done so far; folder jobs keep
complete files only; a killed run's temporary files are neither inputs nor left for long."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from media import LONG_FRAMES, ROOT, partial_files, probe, write_image

TIMEOUT_S = 120


class _Run:
    """``python -m stream ARGS`` in a subprocess whose stderr is read as it comes."""

    def __init__(self, *args: object):
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "stream", *map(str, args)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
        self.err = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while chunk := self.proc.stderr.read1(4096):
            self.err.extend(chunk)

    def wait_for_frames(self, count: int, total: int = LONG_FRAMES) -> None:
        deadline, done = time.monotonic() + TIMEOUT_S, 0
        while time.monotonic() < deadline and self.proc.poll() is None:
            found = re.findall(rb"(\d+)/%d" % total, bytes(self.err))  # tqdm: "  36/2000 [..."
            done = int(found[-1]) if found else 0
            if done >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"no {count} frames within {TIMEOUT_S} s (rc {self.proc.poll()}): {self.text[-500:]!r}")

    def stop(self, signum: int) -> int:
        try:
            self.proc.send_signal(signum)
            return self.proc.wait(TIMEOUT_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.reader.join(10)

    @property
    def text(self) -> str:
        return bytes(self.err).decode(errors="replace")


@pytest.mark.parametrize("signum, name", [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "stopped by SIGTERM"),
                                          (signal.SIGHUP, "stopped by SIGHUP")])
def test_a_stopped_video_job_keeps_a_playable_file_of_what_was_done(tmp_path, long_clip, tiny_style, signum, name):
    out = tmp_path / "anime.mp4"
    run = _Run(long_clip, out, "--style", tiny_style, "--max-side", 64, "--threads", 1)
    run.wait_for_frames(20)
    rc = run.stop(signum)
    text = run.text

    assert rc == 128 + signum, text[-800:]
    assert "Traceback" not in text
    m = re.search(rf"{name}: wrote (\d+) frames", text)
    assert m, text[-800:]
    written = int(m.group(1))
    result = probe(out)
    assert result.frames == written
    assert 20 <= written < LONG_FRAMES
    assert result.audio_codec == "aac"
    assert (result.width, result.height) == (64, 48)
    assert result.times == sorted(result.times)
    assert abs(result.times[-1] - (written - 1) / 24) < 0.001  # the first frames, at their own times
    assert partial_files(tmp_path) == []


def test_a_stopped_folder_job_leaves_only_complete_files(tmp_path, clip, long_clip, tiny_style):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    shutil.copy(clip, src / "a.mp4")
    shutil.copy(long_clip, src / "b.mp4")
    run = _Run(src, dst, "--style", tiny_style, "--max-side", 64, "--threads", 1)
    run.wait_for_frames(20)  # well into b.mp4, after a.mp4 was finished
    rc = run.stop(signal.SIGTERM)
    assert rc == 143, run.text[-800:]
    assert "stopped by SIGTERM: wrote 1 complete files of 2" in run.text
    assert sorted(p.name for p in dst.iterdir()) == ["a.mp4"]  # no half b.mp4 under its final name
    assert probe(dst / "a.mp4").frames == 30


def test_a_killed_runs_temporary_files_are_not_inputs_and_are_cleaned_up(tmp_path, clip, tiny_style, cli):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    dst.mkdir()
    shutil.copy(clip, src / "a.mp4")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = f".a.{int(dead.stdout)}.partial.mp4"  # what a SIGKILLed run leaves: its pid no longer runs
    shutil.copy(clip, src / stale)
    (dst / stale).write_bytes(b"half a file")
    write_image(src / ".hidden.png")
    rc, _, err = cli(src, dst, "--style", tiny_style, "--max-side", 32, "-q")
    assert rc == 0, err
    assert sorted(p.name for p in dst.iterdir()) == ["a.mp4"]  # the leftover beside the output is gone too


def test_sigterm_finishes_a_live_recording(tmp_path, long_clip, tiny_style):
    out = tmp_path / "rec.mp4"
    run = _Run(long_clip, out, "--live", "--style", tiny_style, "--max-side", 32, "--threads", 1)
    deadline = time.monotonic() + TIMEOUT_S
    while b"played live" not in run.err and time.monotonic() < deadline and run.proc.poll() is None:
        time.sleep(0.05)
    time.sleep(2.0)  # two seconds of a 24 fps clip played live
    rc = run.stop(signal.SIGTERM)
    assert rc == 143, run.text[-800:]
    m = re.search(r"stopped by SIGTERM: wrote (\d+) frames to", run.text)
    assert m and "Traceback" not in run.text, run.text[-800:]
    assert probe(out, audio=False).frames == int(m.group(1)) > 10
    assert partial_files(tmp_path) == []
