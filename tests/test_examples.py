"""The examples in examples/ run as documented (they use the built-in style and the shipped sample)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "astronaut_pan.mp4"


def _run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_convert_with_stats(tmp_path):
    out = _run("examples/convert_with_stats.py", str(SAMPLE), str(tmp_path / "anime.mp4"))
    assert re.match(r"96 frames at [\d.]+ fps on cpu \((int8|bf16|fp32)\)", out)
    assert (tmp_path / "anime.mp4").stat().st_size > 10_000


def test_custom_sink():
    assert _run("examples/custom_sink.py", str(SAMPLE)).startswith("96 frames; mean RGB first [")


def test_convert_with_stats_reports_a_bad_input(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    done = subprocess.run([sys.executable, "examples/convert_with_stats.py", str(bad), str(tmp_path / "o.mp4")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.startswith("cannot read the input: ")
