"""The benchmark scripts' own logic (their measurements are run by hand, never timed in tests)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_plot_prints_one_json_line_per_style_and_cap(tiny_style, tmp_path):
    png = tmp_path / "fps.png"
    done = subprocess.run([sys.executable, "bench/plot.py", "--styles", str(tiny_style), "--caps", "32,64",
                           "--repeats", "2", "--png", str(png)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    points = [r for r in rows if "fps" in r]
    assert [(r["max_side"], r["frame"]) for r in points] == [(32, "640x480"), (64, "640x480")]
    assert all(r["fps"] > 0 for r in points)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no plot" in done.stderr and not png.exists()
    else:
        assert png.stat().st_size > 1000


def test_live_specs_take_an_optional_cap():
    sys.path.insert(0, str(ROOT))
    from bench.bench import _live_spec
    assert _live_spec("paprika@256") == ("paprika", 256)
    assert _live_spec("paprika-lite") == ("paprika-lite", None)
