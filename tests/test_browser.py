"""The web page in a real browser: Debian's chromium, headless, driven by Playwright, against a real server.

An image through the page and its before | after view checked pixel by pixel, a video job through the page,
an over-limit upload answered 413 to ``fetch``, and the Live tab with Chromium's fake camera (a .y4m clip
made here, CAMERA_FPS frames a second) reaching the WebSocket, coming back stylised and saying when a style
is too slow for the camera.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

import media
from stream import weights
from stream.engine import Engine
from stream.jobs import JobQueue, converter
from stream.serve import StyleService

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt install chromium)")
playwright_api = pytest.importorskip("playwright.sync_api")

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
         "--use-fake-device-for-media-stream"]


CAMERA_FPS = 5  # the fake camera's rate: low enough that the tiny style keeps up on a busy machine
SLOW_S = 1.0  # seconds a frame of the test's "slow" style (the default style's name) takes: it cannot keep up


def write_y4m(path: Path, frames: int = 20, size: tuple[int, int] = (320, 240), fps: int = CAMERA_FPS) -> Path:
    """A clip Chromium's fake camera plays in a loop (YUV4MPEG2)."""
    with av.open(str(path), "w", format="yuv4mpegpipe") as out:
        v = out.add_stream("rawvideo", rate=fps)
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
    from stream.webapp import WebServer, create_app

    def engine(style, side):
        tiny = Engine(tiny_style, max_side=side or 64, precision="fp32", device="cpu")
        if style != weights.DEFAULT_STYLE:
            return tiny

        def slow(rgb):  # the default's name, standing for a style too slow for live video
            time.sleep(SLOW_S)
            return tiny(rgb)
        return slow

    service = StyleService(engine, default_style="tiny", queue=2)
    jobs = JobQueue(tmp_path_factory.mktemp("jobs"), converter(lambda style, _side: engine(style, 32)))
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


@pytest.mark.parametrize("steady", [False, True])
def test_a_video_job_through_the_page(page, clip, tmp_path, steady):
    page.click("nav button[data-tab=video]")
    assert not page.is_checked("#job-deflicker")  # off unless asked for
    if steady:
        page.click("label.check")  # the words tick the box, as a person would
        assert page.is_checked("#job-deflicker")
        page.screenshot(path=str(tmp_path / "video-tab.png"))
    page.set_input_files("#video-input", str(clip))
    page.wait_for_selector("#job-result:not([hidden])", timeout=60_000)
    assert page.inner_text("#job-status").startswith("done: 30 / 30 frames")
    src = page.get_attribute("#job-video", "src")
    job = page.request.get(page.url.rstrip("/") + src.removesuffix("/result")).json()
    assert job["deflicker"] is steady  # what the box said reached the job
    video = page.request.get(page.url.rstrip("/") + src).body()
    (tmp_path / "job.mp4").write_bytes(video)
    assert media.probe(tmp_path / "job.mp4").times == media.probe(clip).times


def test_an_error_shows_as_a_message(page, tmp_path):
    bad = tmp_path / "not-a-photo.png"
    bad.write_bytes(b"nothing to see" * 10)
    page.set_input_files("#file-input", str(bad))
    page.wait_for_function("document.getElementById('error').textContent.length > 0")
    assert "not an image" in page.inner_text("#error")


ACCENT = np.array([0xFF, 0x8A, 0x5C])  # the page's --accent: the divider and the slider's thumb
BAND = 18  # pixels either side of the divider left out of the picture checks (the bar and the 28 px thumb)


def pattern(width: int, height: int) -> np.ndarray:
    """A test photo (RGB) whose every region differs: red across, green down, a coarse blue checker."""
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    block = max(width, height) // 8
    checker = ((np.arange(height)[:, None] // block + np.arange(width)[None, :] // block) % 2) * 60 + 180
    return np.stack([x, y, checker], axis=-1).astype(np.uint8)


@pytest.fixture(scope="module")
def invert_site():
    """The web app with a "style" that inverts the picture: what each pixel of the result must be is known."""
    from stream.webapp import WebServer, create_app

    server = WebServer(create_app(StyleService(lambda _s, _m: lambda rgb: 255 - rgb, default_style="invert")),
                       "127.0.0.1", 0)
    server.start()
    yield server.url
    server.stop()


def _shot(page, box: dict) -> np.ndarray:
    """The page's pixels (RGB) in ``box`` (page coordinates) widened by BAND each side."""
    png = page.screenshot(full_page=True)
    rgb = _decode(png)
    x0, x1 = max(0, box["x"] - BAND), min(rgb.shape[1], box["x"] + box["w"] + BAND)
    return rgb[box["y"]:box["y"] + box["h"], x0:x1], box["x"] - x0


def _thumb_centre(row: np.ndarray) -> float | None:
    """The centre column of the widest run of accent-coloured pixels in ``row`` (the slider's thumb)."""
    hits = np.flatnonzero(np.abs(row.astype(int) - ACCENT).max(axis=1) <= 12)
    if hits.size < 10:
        return None
    return (hits[0] + hits[-1]) / 2


@pytest.mark.parametrize("viewport", [(1100, 900), (390, 844)], ids=["desktop", "phone"])
def test_before_after_shows_each_picture_unscaled_either_side_of_the_divider(browser, invert_site, tmp_path,
                                                                             viewport):
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    try:
        page.goto(invert_site)
        page.wait_for_selector(".style.on")
        for name, (w, h) in {"landscape": (1280, 853), "portrait": (600, 900), "small": (160, 120)}.items():
            photo = pattern(w, h)
            path = tmp_path / f"{name}.png"
            cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
            page.evaluate("document.getElementById('image-result').hidden = true")
            page.set_input_files("#file-input", str(path))
            page.wait_for_selector("#image-result:not([hidden])")
            box = page.evaluate("""() => { const r = document.getElementById('compare').getBoundingClientRect();
                return {x: Math.round(r.left + scrollX), y: Math.round(r.top + scrollY),
                        w: Math.round(r.width), h: Math.round(r.height)}; }""")
            shown = f"{name} {w}x{h} shown {box['w']}x{box['h']} at {viewport[0]} px"
            assert box["w"] <= min(w, viewport[0] - 32) and box["h"] <= h, shown  # fits, never upscaled
            assert abs(box["w"] / box["h"] - w / h) < 0.01, shown  # the photo's own aspect
            slider = page.evaluate("(() => { const r = document.getElementById('slider').getBoundingClientRect();"
                                   " return [r.left + scrollX, r.width]; })()")
            assert slider == pytest.approx([box["x"] - 14, box["w"] + 28], abs=1), shown  # spans the picture
            want_before = cv2.resize(photo, (box["w"], box["h"]), interpolation=cv2.INTER_AREA).astype(int)
            want_after = 255 - want_before
            views = {}
            for at in (100, 0, 30, 50, 70):
                page.fill("#slider", str(at))
                views[at], left = _shot(page, box)
                if viewport[0] > 1000:
                    page.screenshot(path=str(tmp_path / f"{name}-{at}.png"))
                divider = round(at / 100 * box["w"])
                thumb = _thumb_centre(views[at][box["h"] // 2])
                assert thumb is not None and abs(thumb - left - divider) <= 2, (shown, at, thumb, divider)
            before, after = views[100][:, left:left + box["w"]].astype(int), views[0][:, left:left + box["w"]].astype(int)
            inside = np.s_[:, BAND:box["w"] - BAND]
            assert np.abs(before - want_before)[inside].mean() < 4, shown  # the original, scaled to fit
            assert np.abs(after - want_after)[inside].mean() < 4, shown  # the whole result, scaled the same
            for at in (30, 50, 70):
                view = views[at][:, left:left + box["w"]].astype(int)
                divider = round(at / 100 * box["w"])
                west, east = np.s_[:, :max(0, divider - BAND)], np.s_[:, divider + BAND:]
                for side, want in ((west, before), (east, after)):  # the original's, the result's own pixels
                    error = np.abs(view[side] - want[side])
                    assert error.size == 0 or (error.mean() < 0.5 and error.max() <= 8), \
                        (shown, at, error.mean(), error.max())
                assert np.abs(view[east] - want_after[east]).mean() < 4, (shown, at)
    finally:
        context.close()


def test_an_upload_over_the_limit_is_answered_413_to_fetch(page):
    got = page.evaluate("""async () => {
        const r = await fetch('/v1/stylize', {method: 'POST', body: new Blob([new Uint8Array(40000000)])});
        return [r.status, (await r.json()).error]; }""")
    assert got == [413, "the body is over 32 MiB"]


def _live_numbers(page) -> dict:
    text = page.inner_text("#live-stats")
    import re

    m = re.fullmatch(r"(\S+): ([\d.]+) fps of the camera's ([\d.]+), [\d.]+ ms, (\d+) dropped", text)
    assert m, text
    return {"style": m[1], "fps": float(m[2]), "camera": float(m[3]), "shown": page.evaluate("live.shown")}


def test_the_live_tab_starts_real_time_and_says_when_a_style_is_too_slow(page, tmp_path):
    page.click("nav button[data-tab=live]")
    assert page.get_attribute(".style.on", "data-style") == weights.DEFAULT_LIVE_STYLE
    page.click("#live-start")
    page.wait_for_function("live.shown >= 3 && document.getElementById('live-stats').textContent", timeout=60_000)
    page.wait_for_timeout(3500)  # a whole measuring window
    first = _live_numbers(page)
    page.wait_for_timeout(1500)
    second = _live_numbers(page)
    assert first["style"] == second["style"] == weights.DEFAULT_LIVE_STYLE
    assert second["shown"] > first["shown"] + 2  # frames keep coming back
    assert abs(second["camera"] - CAMERA_FPS) <= 1.5 and second["fps"] >= CAMERA_FPS / 2, second
    assert page.is_hidden("#live-hint")
    assert page.get_attribute("#live-out", "src").startswith("blob:")
    assert "/v1/live/" in page.inner_text("#live-mjpeg")
    size = page.evaluate("[document.getElementById('live-out').naturalWidth, document.getElementById('live-out').naturalHeight]")
    assert size == [320, 240]  # the camera's frame, stylised at its own size
    page.click(f".style[data-style={weights.DEFAULT_STYLE}]")  # a style at SLOW_S a frame
    page.wait_for_selector("#live-hint:not([hidden])", timeout=30_000)
    slow = _live_numbers(page)
    assert slow["style"] == weights.DEFAULT_STYLE and slow["fps"] <= 1.5 / SLOW_S, slow
    hint = page.inner_text("#live-hint")
    assert "too slow" in hint and weights.DEFAULT_LIVE_STYLE in hint
    page.screenshot(path=str(tmp_path / "live-slow.png"))
    page.click(f".style[data-style={weights.DEFAULT_LIVE_STYLE}]")
    page.wait_for_selector("#live-hint", state="hidden", timeout=30_000)
    page.click("#live-stop")
