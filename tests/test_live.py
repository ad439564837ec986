"""The live path without hardware: a file paced like a camera, a fake virtual-camera backend, and a
real OpenCV window on Xvfb."""
from __future__ import annotations

import contextlib
import os
import select
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
import torch

import media
from stream.deflicker import Deflicker
from stream.engine import Engine
from stream.errors import SinkError, SourceError
from stream import weights
from stream.live import CAPTURE_TIME_BASE, CameraSource, PacedSource, StyleSwitcher
from stream.livejob import LiveOptions, run_live
from stream.pipeline import Pipeline
from stream.sources import VideoSource

LIVE_FPS = 30
SLOW_ENGINE_S = 0.1  # seconds per frame of the deliberately slow engine: 3x slower than the source


class _Constant(torch.nn.Module):
    """A 'style' with a known answer: every pixel becomes ``value`` (in [-1, 1], RGB)."""

    def __init__(self, value: tuple[float, float, float]):
        super().__init__()
        self.register_buffer("value", torch.tensor(value).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value.to(x.dtype).expand(x.shape[0], 3, x.shape[2], x.shape[3]).clone()


def _constant_style(path: Path, value: tuple[float, float, float]) -> Path:
    torch.jit.script(_Constant(value)).save(str(path))
    return path


@pytest.fixture(scope="module")
def cyan_style(tmp_path_factory) -> Path:
    return _constant_style(tmp_path_factory.mktemp("cyan") / "cyan.pt", (-1.0, 1.0, 1.0))


@pytest.fixture(scope="module")
def magenta_style(tmp_path_factory) -> Path:
    return _constant_style(tmp_path_factory.mktemp("magenta") / "magenta.pt", (1.0, -1.0, 1.0))


@pytest.fixture(scope="module")
def live_clip(media_dir) -> Path:
    """2 s at 30 fps, 96x64, no audio."""
    return media.write_clip(media_dir / "live.mp4", frames=60, size=(96, 64), fps=LIVE_FPS, audio=None)


@pytest.fixture(scope="module")
def still_clip(media_dir) -> Path:
    """live_clip's first frame for 2 s: nothing moves, so --deflicker blends every pixel it can."""
    return media.write_clip(media_dir / "still.mp4", frames=60, size=(96, 64), fps=LIVE_FPS, audio=None, still=True)


def _slow(image: np.ndarray) -> np.ndarray:
    time.sleep(SLOW_ENGINE_S)
    return 255 - image


class _Collect:
    def __init__(self):
        self.frames = []

    def write(self, frame, image):
        self.frames.append((frame, image.copy(), time.perf_counter()))

    def write_audio(self, item):
        raise AssertionError("live paths carry no audio")


def test_paced_source_plays_at_native_rate(live_clip):
    source = PacedSource(VideoSource(live_clip))
    t0 = time.perf_counter()
    frames = list(source)
    wall = time.perf_counter() - t0
    source.close()
    assert len(frames) == 60
    assert 59 / LIVE_FPS * 0.9 <= wall <= 59 / LIVE_FPS + 1.0
    assert frames[0].time_base == CAPTURE_TIME_BASE and frames[0].pts == 0
    times = [f.time for f in frames]
    assert all(b > a for a, b in zip(times, times[1:]))


def test_slow_engine_drops_stale_frames_and_latency_stays_bounded(live_clip):
    sink = _Collect()
    pipeline = Pipeline(PacedSource(VideoSource(live_clip)), _slow, sink, drop_stale=True)
    stats = pipeline.run()
    assert stats.frames_in == 60
    assert stats.dropped > 0
    assert stats.frames_out + stats.dropped == stats.frames_in
    assert stats.frames_out < 60 * 0.6  # a 3x slower engine cannot keep up
    # Latency stays near one inference (+ at most one waiting frame), it does not pile up:
    assert stats.latency_ms_p95 < 1000 * (3 * SLOW_ENGINE_S) + 250
    assert pipeline._frames.maxsize == 1 and pipeline._results.maxsize == 1
    # The freshest frames win: the last captured frame is the last shown.
    assert sink.frames[-1][0].index == 59


def test_file_pipeline_never_drops_with_the_same_slow_engine(live_clip):
    sink = _Collect()
    stats = Pipeline(VideoSource(live_clip), _slow, sink).run()
    assert stats.dropped == 0 and stats.frames_out == 60


@pytest.mark.parametrize("deflicker", [False, True])
def test_recording_keeps_capture_timestamps(tmp_path, live_clip, tiny_engine, deflicker):
    out = tmp_path / "rec.mp4"
    switcher = StyleSwitcher([tiny_engine.spec], tiny_engine, tiny_engine.options)
    stats = run_live(str(live_clip), switcher, LiveOptions(output=out, deflicker=deflicker), announce=lambda m: None)
    assert media.animestream_threads() == []  # the pipeline's, and the filter's helper, all ended
    with av.open(str(out)) as c:
        times = [f.time for f in c.decode(video=0)]
    assert len(times) == stats.frames_out > 10
    # Plays at real speed: the recording spans the clip's duration, not frames / nominal rate.
    assert abs(times[-1] - 59 / LIVE_FPS) < 0.35
    assert not list(tmp_path.glob(".*partial*"))


class FakeBackend:
    """A pyvirtualcam backend that keeps what it is sent (pyvirtualcam's backend contract)."""

    instances: list = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height, self.fps, self._device = width, height, fps, device or "fake0"
        self.sent: list[tuple[float, np.ndarray]] = []
        self.closed = 0
        FakeBackend.instances.append(self)

    def send(self, frame):
        self.sent.append((time.perf_counter(), frame.copy()))

    def device(self):
        return self._device

    def native_fourcc(self):
        return None

    def close(self):
        self.closed += 1


@pytest.fixture
def fake_vcam():
    import pyvirtualcam
    pyvirtualcam.register_backend("animestream-test", FakeBackend)
    FakeBackend.instances.clear()
    yield FakeBackend
    pyvirtualcam.camera.BACKENDS.pop("animestream-test", None)


def test_virtual_camera_gets_frames_at_the_requested_rate(fake_vcam, live_clip, cyan_style):
    engine = Engine(cyan_style, max_side=64, precision="fp32", device="cpu")
    switcher = StyleSwitcher([str(cyan_style)], engine, engine.options)
    stats = run_live(str(live_clip), switcher,
                     LiveOptions(vcam=True, vcam_backend="animestream-test", vcam_fps=20.0),
                     announce=lambda m: None)
    (backend,) = fake_vcam.instances
    assert backend.closed == 1
    assert (backend.width, backend.height) == (96, 64)
    times = np.array([t for t, _ in backend.sent])
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert 20 * 0.8 <= rate <= 20 * 1.2
    assert stats.extra["vcam_frames"] == len(times)
    # After the first results, the camera shows the stylised picture (cyan), re-sent between results.
    last = backend.sent[-1][1].reshape(64, 96, 3)
    assert last[..., 0].max() == 0 and last[..., 1].min() == 255 and last[..., 2].min() == 255


def test_missing_virtual_camera_fails_fast_with_how_to(monkeypatch):
    from stream.vcam import VirtualCamera
    t0 = time.perf_counter()
    with pytest.raises(SinkError) as err:
        VirtualCamera(width=64, height=48, fps=30, backend="v4l2loopback", device="/dev/video99")
    assert time.perf_counter() - t0 < 5
    message = str(err.value)
    assert "\n" not in message
    assert "modprobe v4l2loopback" in message


def test_unknown_virtual_camera_backend_is_refused():
    from stream.vcam import VirtualCamera
    with pytest.raises(SinkError, match="backend 'nope' is not available"):
        VirtualCamera(width=64, height=48, fps=30, backend="nope")


@pytest.mark.parametrize("deflicker", [False, True])  # the filter must not fade one style into the next
def test_style_switch_takes_over_within_about_one_frame(live_clip, still_clip, cyan_style, magenta_style, deflicker):
    first = Engine(cyan_style, max_side=64, precision="fp32", device="cpu")
    switcher = StyleSwitcher([str(cyan_style), str(magenta_style)], first, first.options)
    sink = _Collect()
    job = Deflicker(switcher, overlap=True) if deflicker else switcher  # as run_live wraps it
    source = VideoSource(still_clip if deflicker else live_clip)
    pipeline = Pipeline(PacedSource(source), job, sink, drop_stale=True)
    switched_at: list[float] = []

    def switch_midway():
        time.sleep(0.8)
        switcher.select(1)
        switched_at.append(time.perf_counter())

    t = threading.Thread(target=switch_midway)
    t.start()
    try:
        pipeline.run()
    finally:
        t.join()
        if deflicker:
            job.close()
    colours = [tuple(int(v) for v in img[0, 0]) for _, img, _ in sink.frames]
    assert colours[0] == (0, 255, 255) and colours[-1] == (255, 0, 255)
    first_magenta = next(when for (_, img, when) in sink.frames if tuple(img[0, 0]) == (255, 0, 255))
    assert first_magenta - switched_at[0] < 0.5  # about one inference time, with a busy machine's slack


def test_a_style_switch_keeps_every_engine_option(cyan_style, magenta_style, cli, live_clip, monkeypatch):
    """--threads, --max-side, --precision and --device hold for every style the preview switches to."""
    from stream import cli as cli_module

    seen = {}

    def fake_run_live(spec, switcher, options, announce):
        engine = switcher.select(1)
        seen.update(threads=engine.threads, max_side=engine.max_side, precision=engine.precision,
                    device=str(engine.device), first=switcher.styles[0], style=engine.style)
        return cli_module.Stats(frames_out=1)

    monkeypatch.setattr(cli_module, "run_live", fake_run_live)
    monkeypatch.setattr(cli_module.weights, "list_styles", lambda **_: [weights.resolve(magenta_style)])
    rc, _, err = cli(live_clip, "--live", "--preview", "--style", cyan_style, "--threads", 1, "--max-side", 48,
                     "--precision", "fp32", "--device", "cpu", "-q")
    assert rc == 0, err
    assert seen == {"threads": 1, "max_side": 48, "precision": "fp32", "device": "cpu",
                    "first": weights.resolve(cyan_style), "style": weights.resolve(magenta_style).name}


def test_camera_source_reports_what_it_got_and_stamps_capture_time(live_clip):
    cam = CameraSource(str(live_clip), width=96, height=64, fps=30)  # OpenCV opens files like devices
    try:
        assert cam.description.startswith(f"camera {live_clip}: 96x64")
        frames = [f for _, f in zip(range(5), cam)]
    finally:
        cam.close()
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert frames[0].image.shape == (64, 96, 3) and frames[0].pts == 0
    assert all(b.pts > a.pts for a, b in zip(frames, frames[1:]))


def test_missing_camera_is_a_one_line_error():
    with pytest.raises(SourceError, match=r"camera 97: cannot open it"):
        CameraSource("97")


def test_live_needs_a_destination(cli, live_clip):
    with pytest.raises(SystemExit) as e:
        cli(live_clip, "--live")
    assert e.value.code == 2


# -- a real window on a virtual X server ---------------------------------------------------------

needs_x = pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("xdotool")),
                             reason="needs Xvfb and xdotool (apt install xvfb xdotool)")


@pytest.fixture
def xdisplay():
    """A fresh Xvfb. It picks a free display number itself and writes it to a pipe once it accepts
    connections (``-displayfd``): waiting for its socket file instead once handed a test a display that
    nothing answered on yet, or another server's abstract socket of the same number."""
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    try:
        with os.fdopen(read) as pipe:
            assert select.select([pipe], [], [], 20)[0], "Xvfb did not start in 20 s"
            number = pipe.readline().strip()
        assert number.isdigit(), f"Xvfb did not start (exit code {proc.poll()})"
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def _preview(display, clip, style, log: Path, *extra):
    """``animestream CLIP --live --preview`` on ``display``; stderr goes to ``log`` (a pipe could fill)."""
    env = dict(os.environ, DISPLAY=display, PYTHONUNBUFFERED="1")
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "stream", str(clip), "--live", "--preview", "--style",
                                 str(style), "--max-side", "64", "--precision", "fp32", *map(str, extra)],
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _window(display, proc, log: Path, timeout=60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        found = subprocess.run(["xdotool", "search", "--name", "^animestream$"], capture_output=True, text=True,
                               env=dict(os.environ, DISPLAY=display)).stdout.split()
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError("the preview window never appeared")


def _cyan_pixels(display) -> int:
    from PIL import ImageGrab
    shot = np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB"))
    return int(np.all(shot == (0, 255, 255), axis=-1).sum())


def _wait_for(condition, timeout=20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _key(display, wid, key):
    subprocess.run(["xdotool", "key", "--window", wid, key], env=dict(os.environ, DISPLAY=display), check=True)


@needs_x
def test_preview_shows_the_stylised_frame_s_switches_style_q_quits(xdisplay, cyan_style, media_dir, tmp_path):
    # 60 s of clip and 45 s waits: on a loaded 2-core machine loading torch and the second style can
    # take most of 20 s; q ends the test long before the clip does.
    clip = media.write_clip(media_dir / "preview.mp4", frames=1800, size=(160, 120), fps=30, audio=None)
    rec, log = tmp_path / "rec.mp4", tmp_path / "stderr.txt"
    frame_px = 160 * 120
    with _preview(xdisplay, clip, cyan_style, log, rec) as proc:
        wid = _window(xdisplay, proc, log)
        # The window appears before its first frame; then the stylised (all-cyan) picture must show.
        assert _wait_for(lambda: _cyan_pixels(xdisplay) > 0.5 * frame_px, 45), "no stylised picture on screen"
        _key(xdisplay, wid, "s")  # next style: the built-in one, loaded while capture goes on
        assert _wait_for(lambda: _cyan_pixels(xdisplay) < 0.05 * frame_px, 45), "the style did not switch"
        assert proc.poll() is None
        _key(xdisplay, wid, "q")
        assert proc.wait(30) == 0, log.read_text()
    with av.open(str(rec)) as c:
        assert sum(1 for _ in c.decode(video=0)) > 0  # q finalised the recording


@needs_x
def test_opencv_windows_work_after_the_package_loaded_pyav(xdisplay):
    """PyAV loaded before OpenCV hangs cv2.imshow for good unless the package fixed the library order."""
    code = ("import stream, av, cv2, numpy as np\n"
            "cv2.imshow('t', np.zeros((8, 8, 3), np.uint8)); cv2.waitKey(1); print('shown')")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, DISPLAY=xdisplay),
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["shown"], out.stderr


@needs_x
def test_sigint_ends_a_live_preview_and_finalises_the_recording(xdisplay, cyan_style, media_dir, tmp_path):
    clip = media.write_clip(media_dir / "preview2.mp4", frames=300, size=(160, 120), fps=30, audio=None)
    rec, log = tmp_path / "rec.mp4", tmp_path / "stderr.txt"
    with _preview(xdisplay, clip, cyan_style, log, rec) as proc:
        _window(xdisplay, proc, log)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
    err = log.read_text()
    assert "Traceback" not in err and "interrupted: wrote" in err
    with av.open(str(rec)) as c:
        assert sum(1 for _ in c.decode(video=0)) > 0
    assert not list(tmp_path.glob(".*partial*"))


_FAKE_VCAM_MAIN = """
import json, sys, pyvirtualcam
sent = []
class Fake:
    def __init__(self, *, width, height, fps, fourcc, device, **kw): self.size = (width, height)
    def send(self, frame): sent.append(int(frame.size))
    def device(self): return "fake0"
    def native_fourcc(self): return None
    def close(self): json.dump({"sent": len(sent), "size": self.size}, open(sys.argv[1], "w"))
pyvirtualcam.register_backend("animestream-test", Fake)
from stream.cli import main
sys.exit(main(sys.argv[2:]))
"""


@needs_x
def test_cli_preview_vcam_and_recording_at_once(xdisplay, cyan_style, live_clip, tmp_path):
    """The whole live story in one command: ``INPUT --preview --vcam rec.mp4`` (INPUT paced here,
    the virtual camera a fake backend registered with pyvirtualcam.register_backend)."""
    import json
    rec, stats_path, vcam_report = tmp_path / "rec.mp4", tmp_path / "stats.json", tmp_path / "vcam.json"
    cmd = [sys.executable, "-c", _FAKE_VCAM_MAIN, str(vcam_report), str(live_clip), "--live", "--preview",
           "--vcam", "--vcam-backend", "animestream-test", "--style", str(cyan_style), "--max-side", "64",
           "--precision", "fp32", "--stats-json", str(stats_path), str(rec)]
    done = subprocess.run(cmd, env=dict(os.environ, DISPLAY=xdisplay), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    stats = json.loads(stats_path.read_text())
    for key in ("frames_in", "frames_out", "dropped", "fps", "latency_ms_p50", "latency_ms_p95"):
        assert key in stats
    assert stats["frames_in"] == 60 and stats["frames_out"] + stats["dropped"] == 60
    with av.open(str(rec)) as c:
        assert sum(1 for _ in c.decode(video=0)) == stats["frames_out"]
    report = json.loads(vcam_report.read_text())
    assert report["size"] == [96, 64] and report["sent"] > 10


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 displays are Linux's")
@pytest.mark.parametrize("display", [None, "dead"])
def test_preview_without_an_x_server_is_a_one_line_error_not_an_abort(display, cyan_style, live_clip, tmp_path):
    """OpenCV's Qt plugin aborts the process when no X server answers; --preview must say so in one line,
    exit 1 and leave no recording behind. "dead" is a display number no server listens on."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    if display == "dead":
        n = next(n for n in range(4900, 5000) if not Path(f"/tmp/.X11-unix/X{n}").exists())
        env["DISPLAY"] = f":{n}"
    rec = tmp_path / "rec.mp4"
    done = subprocess.run([sys.executable, "-m", "stream", str(live_clip), "--live", "--preview", "--style",
                           str(cyan_style), "--max-side", "64", "--precision", "fp32", str(rec)], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("animestream: error: --preview: no X "), done.stderr
    assert "Traceback" not in done.stderr and "qt.qpa" not in done.stderr
    assert not rec.exists()


@needs_x
def test_the_display_probe_finds_a_live_x_server(xdisplay):
    from stream._xcb import display_error
    assert display_error({"DISPLAY": xdisplay}) is None
    assert display_error({}) == "no X display: DISPLAY is not set"
    assert display_error({"WAYLAND_DISPLAY": "wayland-0"}) is None  # the toolkit decides there


def test_network_stream_source(live_clip, tmp_path):
    """An http:// URL is read through PyAV like any stream (served here from 127.0.0.1)."""
    import functools
    import http.server

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(live_clip.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        from stream.live import open_live_source
        url = f"http://127.0.0.1:{server.server_address[1]}/{live_clip.name}"
        source = open_live_source(url)
        try:
            frames = [item for item in source if hasattr(item, "image")]
        finally:
            source.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert len(frames) == 60 and frames[0].image.shape == (64, 96, 3)


def test_missing_camera_through_the_cli_prints_exactly_one_line(capfd):
    """OpenCV and FFmpeg log from C straight to fd 2; none of that may reach the user."""
    from stream.cli import main
    capfd.readouterr()
    assert main(["/dev/video97", "--preview", "-q"]) == 1
    err = capfd.readouterr().err
    assert err.splitlines() == [
        "animestream: error: camera /dev/video97: cannot open it (is it connected, and not in use by another "
        "program?)"]


@contextlib.contextmanager
def tcp_server(on_connect):
    """A TCP server on 127.0.0.1 calling ``on_connect(connection)`` for each client; yields its port.
    Connections stay open until the server stops."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    held, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn = srv.accept()[0]
            except OSError:
                continue
            held.append(conn)
            on_connect(conn)

    t = threading.Thread(target=serve)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(5)
        for c in held:
            c.close()
        srv.close()


@pytest.fixture
def silent_server():
    """Accepts every connection and never sends a byte."""
    with tcp_server(lambda conn: None) as port:
        yield port


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_a_stream_that_accepts_and_never_answers_is_one_line_within_the_timeout(silent_server, cli, tmp_path,
                                                                                scheme):
    t0 = time.perf_counter()
    rc, _, err = cli(f"{scheme}://127.0.0.1:{silent_server}/live", tmp_path / "rec.mp4", "--timeout", 1)
    assert time.perf_counter() - t0 < 10
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"127.0.0.1:{silent_server}" in err
    assert not (tmp_path / "rec.mp4").exists()


def test_ctrl_c_ends_a_live_run_on_a_stalled_stream_promptly(silent_server, tmp_path):
    """SIGINT while the source waits for its first answer: the run ends within about a second."""
    import signal as signal_module
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "stream", f"http://127.0.0.1:{silent_server}/live",
                             str(tmp_path / "rec.mp4"), "--timeout", "30"], cwd=media.ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(6)  # started up, connected, waiting
    t0 = time.perf_counter()
    proc.send_signal(signal_module.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert time.perf_counter() - t0 < 1.5, err
    assert proc.returncode == 130 and b"Traceback" not in err, err


@pytest.fixture
def stalling_server(media_dir):
    """An HTTP server that sends half of an MPEG-TS clip, then keeps the connection silent."""
    ts = media.write_clip(media_dir / "stall.ts", frames=120, size=(96, 64), fps=30, audio=None)
    data = ts.read_bytes()[: ts.stat().st_size // 2 // 188 * 188]

    def answer(conn):
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\n\r\n" + data)

    with tcp_server(answer) as port:
        yield f"http://127.0.0.1:{port}/live.ts"


def test_a_stream_that_stalls_ends_the_run_with_one_line_and_keeps_the_recording(stalling_server, cli, tmp_path,
                                                                                tiny_style):
    t0 = time.perf_counter()
    rc, _, err = cli(stalling_server, tmp_path / "rec.mp4", "--timeout", 1, "--style", tiny_style, "--max-side", 32)
    assert time.perf_counter() - t0 < 30
    assert rc == 0 and "Traceback" not in err, err
    assert "the stream ended early (no data for 1 s)" in err
    assert media.probe(tmp_path / "rec.mp4", audio=False).frames >= 2  # a burst: most frames are stale


def test_ctrl_c_during_a_stalled_read_ends_the_run_within_a_second(stalling_server, tmp_path, tiny_style):
    proc = subprocess.Popen([sys.executable, "-m", "stream", stalling_server, str(tmp_path / "rec.mp4"),
                             "--timeout", "30", "--style", str(tiny_style), "--max-side", "32"], cwd=media.ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[tuple[float, bytes]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.perf_counter(), line) for line in proc.stderr))
    reader.start()
    time.sleep(8)  # started, read what was sent, now waiting for more
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    reader.join(10)
    err = b"".join(line for _, line in lines)
    ended = [t for t, line in lines if b"interrupted: wrote" in line]
    assert ended and ended[0] - t0 < 1.0, err  # the run is over, the recording finished, within a second
    assert proc.returncode == 130 and b"Traceback" not in err, err
    assert media.probe(tmp_path / "rec.mp4", audio=False).frames >= 2  # what came before the stall is kept


@needs_x
def test_closing_the_preview_window_ends_the_run_like_q(xdisplay, cyan_style, media_dir, tmp_path):
    import xwindow

    clip = media.write_clip(media_dir / "preview.mp4", frames=1800, size=(160, 120), fps=30, audio=None)
    rec, log = tmp_path / "rec.mp4", tmp_path / "stderr.txt"
    with _preview(xdisplay, clip, cyan_style, log, rec) as proc:
        wid = _window(xdisplay, proc, log)
        assert _wait_for(lambda: _cyan_pixels(xdisplay) > 0.5 * 160 * 120, 45), "no stylised picture on screen"
        xwindow.close(xdisplay, int(wid))
        assert proc.wait(30) == 0, log.read_text()  # ended, not a new window and the run going on
    assert "Traceback" not in log.read_text()
    with av.open(str(rec)) as c:
        assert sum(1 for _ in c.decode(video=0)) > 0  # the recording was finished


@needs_x
def test_the_overlay_text_on_screen_is_drawn_once_on_a_solid_box(xdisplay, cyan_style, media_dir, tmp_path):
    """The help line on screen matches that text rendered once, white on the box colour, pixel for pixel."""
    import cv2
    from PIL import ImageGrab

    from stream.preview import FONT, HELP, OVERLAY_BOX, OVERLAY_PAD_PX, OVERLAY_SCALE, OVERLAY_TEXT

    clip = media.write_clip(media_dir / "wide.mp4", frames=1800, size=(480, 120), fps=30, audio=None)
    log = tmp_path / "stderr.txt"
    (w, h), base = cv2.getTextSize(HELP, FONT, OVERLAY_SCALE, 1)
    template = np.full((h + base + 2, w + 4, 3), OVERLAY_BOX, np.uint8)
    cv2.putText(template, HELP, (2, h + 1), FONT, OVERLAY_SCALE, OVERLAY_TEXT, 1, cv2.LINE_AA)
    with _preview(xdisplay, clip, cyan_style, log) as proc:
        _window(xdisplay, proc, log)
        assert _wait_for(lambda: _cyan_pixels(xdisplay) > 0.3 * 480 * 120, 45), "no stylised picture on screen"
        shot = cv2.cvtColor(np.asarray(ImageGrab.grab(xdisplay=xdisplay).convert("RGB")), cv2.COLOR_RGB2BGR)
    scores = cv2.matchTemplate(shot, template, cv2.TM_SQDIFF)
    best, _, where, _ = cv2.minMaxLoc(scores)
    assert best / template.size < 1.0, f"no clean copy of the help text on screen (mean square error {best / template.size:.1f})"
    assert where[0] <= 2 * OVERLAY_PAD_PX  # in the top-left overlay


def _mjpeg_parts(url: str, count: int, timeout: float = 30) -> list[bytes]:
    """The first ``count`` JPEGs of a multipart/x-mixed-replace stream."""
    import urllib.request

    parts: list[bytes] = []
    with urllib.request.urlopen(url, timeout=timeout) as r:
        assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace; boundary=")
        while len(parts) < count:
            line = r.readline()
            if line.lower().startswith(b"content-length:"):
                size = int(line.split(b":")[1])
                r.readline()  # the blank line before the picture
                parts.append(r.read(size))
    return parts


def test_a_live_run_serves_its_frames_as_mjpeg(live_clip, cyan_style):
    import cv2

    engine = Engine(cyan_style, max_side=64, precision="fp32", device="cpu")
    with socket_port() as port:
        pass
    lines: list[str] = []
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(stats=run_live(
        str(live_clip), StyleSwitcher([str(cyan_style)], engine, engine.options),
        LiveOptions(mjpeg=("127.0.0.1", port)), announce=lines.append)))
    runner.start()
    deadline = time.monotonic() + 30
    while not any("MJPEG" in line for line in lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    parts = _mjpeg_parts(f"http://127.0.0.1:{port}/", 3)
    runner.join(60)
    assert not runner.is_alive() and result["stats"].frames_out > 3
    for jpeg in parts:
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (64, 96, 3) and abs(img.reshape(-1, 3).mean(axis=0) - (255, 255, 0)).max() < 8  # cyan
    assert not [t for t in threading.enumerate() if t.name.startswith("animestream-mjpeg")]


@contextlib.contextmanager
def socket_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]
