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


def test_convert_with_stats_without_arguments_says_how_to_call_it():
    done = subprocess.run([sys.executable, "examples/convert_with_stats.py"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.startswith("usage: ") and "Traceback" not in done.stderr


def test_http_client_waits_out_a_busy_service_then_gets_the_image(tmp_path):
    import threading
    import time

    import numpy as np

    from stream.serve import StyleService
    from stream.webapp import WebServer, create_app

    calls = []

    def slow_identity(_style, _max_side):
        def engine(rgb):
            calls.append(time.monotonic())
            time.sleep(0.8)
            return rgb
        return engine

    server = WebServer(create_app(StyleService(slow_identity, default_style="shinkai", queue=0)), "127.0.0.1", 0)
    server.start()
    url = server.url
    try:
        import urllib.request
        busy = threading.Thread(target=lambda: urllib.request.urlopen(  # holds the only place
            urllib.request.Request(f"{url}/v1/stylize", data=(ROOT / "samples" / "astronaut.jpg").read_bytes(),
                                   method="POST"), timeout=30).read())
        busy.start()
        while not calls:
            time.sleep(0.01)
        out = _run("examples/http_client.py", url, "samples/astronaut.jpg", str(tmp_path / "anime.png"))
        busy.join(30)
    finally:
        server.stop()
    assert out.startswith(f"wrote {tmp_path / 'anime.png'}")
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.8  # refused while busy, served after its retry
    import cv2
    assert np.array_equal(cv2.imread(str(tmp_path / "anime.png")), cv2.imread("samples/astronaut.jpg"))
