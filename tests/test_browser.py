"""The web page in a real browser: Debian's chromium, headless, driven by Playwright, against a real server.

An image through the page, a video job through the page, and the Live tab with Chromium's fake camera
(a .y4m clip made here) reaching the WebSocket and coming back stylised.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

import media
from stream.engine import Engine
from stream.jobs import JobQueue
from stream.serve import StyleService

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt install chromium)")
playwright_api = pytest.importorskip("playwright.sync_api")

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
         "--use-fake-device-for-media-stream"]


def write_y4m(path: Path, frames: int = 60, size: tuple[int, int] = (320, 240)) -> Path:
    """A clip Chromium's fake camera plays in a loop (YUV4MPEG2)."""
    with av.open(str(path), "w", format="yuv4mpegpipe") as out:
        v = out.add_stream("rawvideo", rate=30)
        v.width, v.height, v.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(media.frame_image(i, *size), format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    return path


@pytest.fixture(scope="module")
def site(tiny_style, tmp_path_factory):
    """The web app with the tiny style and video jobs, on a free port."""
    from stream.filejob import convert_video
    from stream.webapp import WebServer, create_app

    def engine(style, side):
        return Engine(tiny_style, max_side=side or 64, precision="fp32", device="cpu")

    def convert(job, progress):
        convert_video(job.upload, job.result, engine(job.style, 32), progress=False, warn=lambda _m: None,
                      keep_partial=False, on_progress=progress, cancel=job.cancel)

    service = StyleService(engine, default_style="tiny", queue=2)
    jobs = JobQueue(tmp_path_factory.mktemp("jobs"), convert)
    server = WebServer(create_app(service, jobs), "127.0.0.1", 0)
    server.start()
    yield server.url
    server.stop()
    jobs.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    y4m = write_y4m(tmp_path_factory.mktemp("camera") / "camera.y4m")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=[*FLAGS, f"--use-file-for-fake-video-capture={y4m}"])
        yield b
        b.close()


@pytest.fixture
def page(browser, site):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.goto(site)
    page.wait_for_selector(".style.on")  # the styles came in
    yield page
    context.close()


def _decode(data: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_an_image_through_the_page(page, tiny_style, tmp_path):
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), cv2.cvtColor(media.frame_image(5, 120, 90), cv2.COLOR_RGB2BGR))
    page.set_input_files("#file-input", str(photo))
    page.wait_for_selector("#image-result:not([hidden])")
    png = page.evaluate("""async () => {
        const data = new Uint8Array(await (await fetch(document.getElementById('result-img').src)).arrayBuffer());
        return Array.from(data); }""")
    got = _decode(bytes(png))  # the very bytes the page shows and offers for download
    want = Engine(tiny_style, max_side=64, precision="fp32", device="cpu")(media.frame_image(5, 120, 90))
    assert np.array_equal(got, want)  # what the engine makes, pixel for pixel
    assert np.abs(got.astype(int) - media.frame_image(5, 120, 90)).mean() > 10
    assert page.get_attribute("#download", "href").startswith("blob:")
    assert "ms in the model" in page.inner_text("#image-status")
    page.fill("#slider", "20")  # the before | after slider moves the split
    assert "20%" in page.get_attribute("#after", "style")
    page.screenshot(path=str(tmp_path / "image.png"))


def test_a_video_job_through_the_page(page, clip, tmp_path):
    page.click("nav button[data-tab=video]")
    page.set_input_files("#video-input", str(clip))
    page.wait_for_selector("#job-result:not([hidden])", timeout=60_000)
    assert page.inner_text("#job-status").startswith("done: 30 / 30 frames")
    src = page.get_attribute("#job-video", "src")
    video = page.request.get(page.url.rstrip("/") + src).body()
    (tmp_path / "job.mp4").write_bytes(video)
    assert media.probe(tmp_path / "job.mp4").times == media.probe(clip).times


def test_an_error_shows_as_a_message(page, tmp_path):
    bad = tmp_path / "not-a-photo.png"
    bad.write_bytes(b"nothing to see" * 10)
    page.set_input_files("#file-input", str(bad))
    page.wait_for_function("document.getElementById('error').textContent.length > 0")
    assert "not an image" in page.inner_text("#error")


def test_the_live_tab_sends_the_camera_and_shows_it_stylised(page):
    page.click("nav button[data-tab=live]")
    page.click("#live-start")
    page.wait_for_function("document.getElementById('live-stats').textContent.includes('fps')", timeout=60_000)
    page.wait_for_function("(document.getElementById('live-stats').textContent.match(/(\\d+) dropped/) || [])[1] !== undefined")
    page.wait_for_timeout(1500)
    shown = page.evaluate("live.shown")
    assert shown >= 3, f"{shown} stylised frames arrived"
    assert page.get_attribute("#live-out", "src").startswith("blob:")
    assert "/v1/live/" in page.inner_text("#live-mjpeg")
    size = page.evaluate("[document.getElementById('live-out').naturalWidth, document.getElementById('live-out').naturalHeight]")
    assert size == [320, 240]
    page.click("#live-stop")
