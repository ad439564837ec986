"""Screenshots of the web page for the README, from public-domain pictures only.

    python docs/make_screenshots.py [--style hayao]     (needs animestream[web], playwright and chromium)

Starts ``animestream serve``'s app on a free port, opens it in headless Chromium and writes
docs/web_image.png (an image stylised, the before | after slider at a third) and docs/web_live.png (the
Live tab, Chromium's fake camera playing samples/astronaut_pan.mp4). Both pictures are NASA's (public
domain).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream.engine import Engine  # noqa: E402
from stream.serve import StyleService  # noqa: E402
from stream.webapp import WebServer, create_app  # noqa: E402


def sample_y4m(path: Path) -> Path:
    """samples/astronaut_pan.mp4 as YUV4MPEG2 at 640x360, what Chromium's fake camera plays."""
    with av.open(str(ROOT / "samples" / "astronaut_pan.mp4")) as src, av.open(str(path), "w", format="yuv4mpegpipe") as out:
        v = out.add_stream("rawvideo", rate=24)
        v.width, v.height, v.pix_fmt = 640, 360, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            frame = frame.reformat(640, 360, "yuv420p")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    return path


def main() -> None:
    from playwright.sync_api import sync_playwright

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--style", default=None)
    args = p.parse_args()
    first = Engine(args.style) if args.style else Engine()
    service = StyleService(lambda s, m: Engine(s, max_side=m), default_style=first.style)
    service.adopt(first.style, None, first)
    server = WebServer(create_app(service), "127.0.0.1", 0)
    server.start()
    work = Path(tempfile.mkdtemp())
    try:
        y4m = sample_y4m(work / "camera.y4m")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={y4m}"])
            page = browser.new_page(viewport={"width": 1100, "height": 860})
            page.goto(server.url)
            page.wait_for_selector(".style.on")
            page.wait_for_timeout(3000)  # the thumbnails
            page.set_input_files("#file-input", str(ROOT / "samples" / "astronaut.jpg"))
            page.wait_for_selector("#image-result:not([hidden])", timeout=120_000)
            page.fill("#slider", "33")
            page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
            page.screenshot(path=str(ROOT / "docs" / "web_image.png"))
            page.click("nav button[data-tab=live]")
            page.click("#live-start")
            page.wait_for_function("document.getElementById('live-stats').textContent.includes('fps')",
                                   timeout=120_000)
            page.wait_for_timeout(4000)
            page.screenshot(path=str(ROOT / "docs" / "web_live.png"))
            browser.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(ROOT / "docs" / "web_image.png", ROOT / "docs" / "web_live.png")


if __name__ == "__main__":
    main()
