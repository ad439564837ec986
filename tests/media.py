"""Synthetic media for the tests, written with PyAV (tiny sizes: the suite must stay fast)."""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
WEIGHTS = ROOT / "weights"
SHINKAI = WEIGHTS / "shinkai.safetensors"
VFR_PTS = [0, 33, 50, 120, 150, 200, 260, 270, 330, 400, 401, 480, 560, 600]  # ms: irregular on purpose
LONG_FRAMES = 2000
SAMPLE_RATE = 44100  # Hz
AUDIO_CHUNK = 1024  # samples per audio frame


def frame_image(i: int, width: int, height: int) -> np.ndarray:
    """A cheap, moving RGB test picture (gradient + a square that walks across)."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (x * 255 // max(1, width - 1) + i * 7) % 256
    img[..., 1] = (y * 255 // max(1, height - 1)) % 256
    img[..., 2] = (i * 13) % 256
    s = max(2, min(width, height) // 4)
    x0 = (i * 3) % max(1, width - s)
    img[s:2 * s, x0:x0 + s] = 255
    return img


def _tone(n_samples: int) -> np.ndarray:
    t = np.arange(n_samples) / SAMPLE_RATE
    left = 0.3 * np.sin(2 * np.pi * 440.0 * t)
    right = 0.3 * np.sin(2 * np.pi * 660.0 * t)
    return np.stack([left, right]).astype(np.float32)


def write_clip(path: Path, *, frames: int = 24, size: tuple[int, int] = (64, 48), fps: int = 24,
               audio: str | None = "aac", pts: list[int] | None = None, time_base: Fraction | None = None,
               faststart: bool = False, preset: str = "ultrafast", rotation: int = 0,
               pix_fmt: str = "yuv420p", keyint: int = 0, still: bool = False, pan: int = 0) -> Path:
    """Write an H.264 clip; ``audio`` is None, "aac" or "pcm_s16le"; ``pts`` gives irregular
    timestamps in ``time_base`` units (variable frame rate); ``rotation`` (degrees, counter-clockwise)
    goes into the display matrix, as phones record portrait video; ``still``: every frame the first;
    ``pan``: instead, a smooth textured scene seen by a camera panning that many pixels a frame."""
    path = Path(path)
    width, height = size
    if pts is not None:
        frames = len(pts)
    tb = time_base or Fraction(1, fps)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.time_base = tb
        video.codec_context.time_base = tb
        video.options = {"crf": "23", "preset": preset}
        if keyint:  # a key frame every keyint frames (pieces of a video are cut at key frames)
            video.options = {**video.options, "g": str(keyint), "keyint_min": str(keyint), "sc_threshold": "0"}
        if rotation:
            video.set_display_rotation(rotation)
        a = None
        if audio is not None:
            a = out.add_stream(audio, rate=SAMPLE_RATE)
            a.layout = "stereo"
        scene = noise_image(7, height, width + pan * frames) if pan else None
        for i in range(frames):
            picture = scene[:, i * pan:i * pan + width] if pan else frame_image(0 if still else i, width, height)
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
            vf.pts = pts[i] if pts is not None else i
            vf.time_base = tb
            out.mux(video.encode(vf))
        if a is not None:
            duration = float((pts[-1] if pts is not None else frames) * tb) + (1 / fps if pts else 0)
            write_audio(out, a, audio, int(duration * SAMPLE_RATE))
        out.mux(video.encode(None))
    return path


def write_audio(out, stream, codec: str, n_samples: int) -> None:
    samples = _tone(n_samples)
    for start in range(0, n_samples, AUDIO_CHUNK):
        chunk = np.ascontiguousarray(samples[:, start:start + AUDIO_CHUNK])
        if codec == "pcm_s16le":
            packed = (chunk.T * 32767).astype(np.int16).reshape(1, -1)
            af = av.AudioFrame.from_ndarray(packed, format="s16", layout="stereo")
        else:
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
        af.sample_rate = SAMPLE_RATE
        af.pts = start
        out.mux(stream.encode(af))
    out.mux(stream.encode(None))


def write_tracks_and_subtitles(path: Path, frames: int = 48, seconds: float = 2.0, text: bytes = b"hello") -> Path:
    """An MKV with 64x48 video at 24 fps, two sound tracks (AAC, PCM) of ``seconds`` and an ASS subtitle."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        tracks = []
        for codec in ("aac", "pcm_s16le"):
            a = out.add_stream(codec, rate=SAMPLE_RATE)
            a.layout = "stereo"
            tracks.append((a, codec))
        sub = out.add_stream("ass")
        sub.time_base = sub.codec_context.time_base = Fraction(1, 1000)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_image(i, 64, 48), format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        for a, codec in tracks:
            write_audio(out, a, codec, int(seconds * SAMPLE_RATE))
        packet = av.Packet(b"0,0,Default,,0,0,0,," + text)
        packet.stream, packet.pts, packet.dts, packet.duration = sub, 500, 500, 1000
        packet.time_base = Fraction(1, 1000)
        out.mux(packet)
        out.mux(v.encode(None))
    return path


def noise_image(seed: int, h: int, w: int) -> np.ndarray:
    """A smooth random picture (blocks of 8, cubic-interpolated) as H x W x 3 uint8."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), "w") as out:
        a = out.add_stream("aac", rate=SAMPLE_RATE)
        a.layout = "stereo"
        write_audio(out, a, "aac", int(seconds * SAMPLE_RATE))
    return path


def write_image(path: Path, width: int = 64, height: int = 48, i: int = 0) -> Path:
    ok = cv2.imwrite(str(path), cv2.cvtColor(frame_image(i, width, height), cv2.COLOR_RGB2BGR))
    assert ok, path
    return path


@dataclass
class Probe:
    """What a media file holds, decoded with PyAV."""

    width: int
    height: int
    times: list[float]  # every video frame's presentation time, seconds
    video_codec: str
    audio_codec: str | None = None
    audio_duration: float | None = None  # seconds of decoded audio samples
    audio_channels: int | None = None
    audio_errors: int = 0  # audio packets that failed to decode
    formats: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return len(self.times)


def probe(path: Path, *, audio: bool = True) -> Probe:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        width, height = v.codec_context.width, v.codec_context.height
        times = [float(f.time) for f in c.decode(v)]
        p = Probe(width, height, times, v.codec_context.name, formats=c.format.name.split(","))
    if audio:
        with av.open(str(path)) as c:
            if c.streams.audio:
                a = c.streams.audio[0]
                p.audio_codec = a.codec_context.name
                p.audio_channels = a.codec_context.channels
                samples = 0
                for packet in c.demux(a):
                    try:
                        samples += sum(f.samples for f in packet.decode())
                    except av.error.FFmpegError:
                        p.audio_errors += 1
                p.audio_duration = samples / (a.codec_context.sample_rate or SAMPLE_RATE)
    return p


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every video frame of a file, decoded with PyAV, as RGB uint8 (H x W x 3)."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


# -- small helpers shared by the tests
def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def partial_files(folder: Path) -> list[Path]:
    """Hidden temporary outputs the sinks write before renaming (``.NAME.PID.partial.EXT``)."""
    return sorted(p for p in Path(folder).glob(".*") if ".partial" in p.name)


def animestream_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("animestream-")]


def needs_shared(test):
    import pytest
    return pytest.mark.skipif(not (SHARED / "media").is_dir(), reason=f"{SHARED}/media is not available")(test)
