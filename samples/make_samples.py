"""Make the shipped samples from a public-domain photo.

    python samples/make_samples.py        (needs scikit-image, for its bundled astronaut photo)

Writes samples/astronaut.jpg and samples/astronaut_pan.mp4: a 4 s, 24 fps, 640x360 H.264 clip that
slowly pans and zooms across the photo, with a stereo AAC tune (so audio handling is visible).
Source: NASA photo of astronaut Eileen Collins (public domain), as bundled in scikit-image
(skimage.data.astronaut).
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
SIZE = (640, 360)  # output width, height in pixels
FPS = 24
SECONDS = 4
SAMPLE_RATE = 44100  # Hz
AUDIO_CHUNK = 1024  # samples per audio frame
NOTES_HZ = (261.63, 329.63, 392.0, 523.25)  # C major arpeggio, one note per second


def astronaut() -> np.ndarray:
    from skimage import data  # dev-only dependency: the photo is bundled with scikit-image
    return data.astronaut()


def pan_frame(photo: np.ndarray, t: float) -> np.ndarray:
    """A 16:9 window that zooms from 100% to 80% of the photo's width while drifting right."""
    h, w = photo.shape[:2]
    zoom = 1.0 - 0.2 * t
    cw = w * zoom
    ch = cw * SIZE[1] / SIZE[0]
    x0 = (w - cw) * (0.2 + 0.6 * t)
    y0 = (h - ch) * 0.35
    m = np.array([[SIZE[0] / cw, 0, -x0 * SIZE[0] / cw], [0, SIZE[1] / ch, -y0 * SIZE[1] / ch]])
    return cv2.warpAffine(photo, m, SIZE, flags=cv2.INTER_AREA)


def tune(n_samples: int) -> np.ndarray:
    t = np.arange(n_samples) / SAMPLE_RATE
    freq = np.array(NOTES_HZ)[np.minimum((t).astype(int), len(NOTES_HZ) - 1)]
    envelope = np.exp(-3 * (t % 1.0))
    left = 0.3 * envelope * np.sin(2 * np.pi * freq * t)
    right = 0.3 * envelope * np.sin(2 * np.pi * freq * 1.5 * t)
    return np.stack([left, right]).astype(np.float32)


def main() -> None:
    photo = astronaut()
    cv2.imwrite(str(HERE / "astronaut.jpg"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 88])
    with av.open(str(HERE / "astronaut_pan.mp4"), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = *SIZE, "yuv420p"
        video.options = {"crf": "23", "preset": "slow"}
        audio = out.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "stereo"
        n = FPS * SECONDS
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(pan_frame(photo, i / (n - 1)), format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, FPS)
            out.mux(video.encode(frame))
        samples = tune(SAMPLE_RATE * SECONDS)
        for start in range(0, samples.shape[1], AUDIO_CHUNK):
            chunk = np.ascontiguousarray(samples[:, start:start + AUDIO_CHUNK])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = start
            out.mux(audio.encode(frame))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))


if __name__ == "__main__":
    main()
