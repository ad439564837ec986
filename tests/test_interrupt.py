"""Ctrl-C during a video: exit 130 and a playable file with the frames done so far."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

from media import LONG_FRAMES, ROOT, partial_files, probe

TIMEOUT_S = 120


def test_sigint_keeps_a_playable_partial_file(tmp_path, long_clip, tiny_style):
    out = tmp_path / "anime.mp4"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream", str(long_clip), str(out), "--style", str(tiny_style),
         "--max-side", "64", "--threads", "1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    err = bytearray()

    def read_stderr():
        while chunk := proc.stderr.read1(4096):
            err.extend(chunk)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + TIMEOUT_S
        done = 0
        while time.monotonic() < deadline and proc.poll() is None:
            counts = re.findall(rb"(\d+)/%d" % LONG_FRAMES, bytes(err))  # tqdm: "  36/2000 [..."
            done = int(counts[-1]) if counts else 0
            if done >= 20:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"finished before it could be interrupted: {bytes(err)[-500:]!r}"
        assert done >= 20, f"no progress within {TIMEOUT_S} s: {bytes(err)[-500:]!r}"
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    text = bytes(err).decode(errors="replace")

    assert rc == 130, text[-800:]
    assert "Traceback" not in text
    m = re.search(r"interrupted: wrote (\d+) frames", text)
    assert m, text[-800:]
    written = int(m.group(1))
    assert out.exists()
    result = probe(out)
    assert result.frames == written
    assert 20 <= written < LONG_FRAMES
    assert result.audio_codec == "aac"
    assert (result.width, result.height) == (64, 48)
    assert result.times == sorted(result.times)
    assert abs(result.times[-1] - (written - 1) / 24) < 0.001  # the first frames, at their own times
    assert partial_files(tmp_path) == []
