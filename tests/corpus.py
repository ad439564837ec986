"""A corpus of bad and unusual inputs, built from nothing, for tests/test_corpus.py.

Each :class:`Case` makes its input in a folder and says how the command line must answer it: the exit
code, and words its stderr must contain (an error that names the problem, or a warning that names
what was left out). Every case also has to hold the promises that apply to all of them: no traceback,
nothing half-written left behind, an untouched input.
"""
from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

import media


@dataclass
class Case:
    name: str
    make: Callable[[Path], Path]  # builds the input in the folder given, returns its path
    output: str = "out.mp4"  # file name of the output, in the same folder
    exit: int = 0
    says: tuple[str, ...] = ()  # words stderr must contain
    args: tuple[str, ...] = ()
    output_written: bool | None = None  # None: exit 0 means written, else not


def _bytes(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path
    return make


def _clip(name: str, **kwargs) -> Callable[[Path], Path]:
    return lambda folder: media.write_clip(folder / name, **kwargs)


def _cut(name: str, fraction: float, **kwargs) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        clip = media.write_clip(folder / f"whole_{name}", **kwargs)
        data = clip.read_bytes()
        clip.unlink()
        path = folder / name
        path.write_bytes(data[: int(len(data) * fraction)])
        return path
    return make


def _garbage_in_the_middle(folder: Path) -> Path:
    clip = media.write_clip(folder / "whole.mp4", frames=96, size=(128, 96))
    data = bytearray(clip.read_bytes())
    clip.unlink()
    middle = len(data) // 2
    data[middle:middle + 20_000] = np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    path = folder / "garbage_middle.mp4"
    path.write_bytes(bytes(data))
    return path


def _image(name: str, array: np.ndarray, params: list[int] | None = None) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        assert cv2.imwrite(str(path), array, params or [])
        return path
    return make


def _png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def _truncated_image(name: str, ext: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        ok, data = cv2.imencode(ext, media.frame_image(1, 96, 72))
        assert ok
        path = folder / name
        path.write_bytes(data.tobytes()[: len(data) // 3])
        return path
    return make


def _two_tracks_and_subtitles(folder: Path) -> Path:
    return media.write_tracks_and_subtitles(folder / "tracks.mkv", frames=24, seconds=1.0, text=b"hi")


def _folder(folder: Path) -> Path:
    src = folder / "album"
    (src / "sub").mkdir(parents=True)
    media.write_image(src / "a.png")
    media.write_image(src / "sub" / "b.jpg")
    (src / "readme.txt").write_text("not media")
    (src / "broken.png").write_bytes(b"not a png")
    return src


def _weights(name: str, data: bytes) -> Callable[[Path], Path]:
    """A good clip, with a bad weights file beside it (the case passes it as --style)."""
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return media.write_clip(folder / "clip.mp4", frames=6)
    return make


RGB = media.frame_image(2, 96, 72)
GREY16 = (np.linspace(0, 65535, 96 * 72).reshape(72, 96)).astype(np.uint16)
RGBA = np.dstack([cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR), np.full((72, 96), 128, np.uint8)])

CASES = [
    # video files
    Case("empty video", _bytes("empty.mp4", b""), exit=1, says=("empty file",)),
    Case("random bytes", _bytes("random.mp4", np.random.default_rng(1).bytes(20_000)), exit=1, says=("random.mp4",)),
    Case("text as video", _bytes("text.mp4", b"not a video\n" * 300), exit=1, says=("text.mp4",)),
    Case("missing file", lambda folder: folder / "missing.mp4", exit=1, says=("no such file",)),
    Case("folder named like a video", lambda folder: (folder / "dir.mp4").mkdir() or folder / "dir.mp4", exit=1,
         says=("dir.mp4",)),
    Case("audio only", lambda folder: media.write_audio_only(folder / "audio.m4a"), exit=1, says=("no video stream",)),
    Case("mp4 cut before its index", _cut("cut_index.mp4", 0.5, frames=48), exit=1, says=("cut_index.mp4",)),
    Case("faststart mp4 cut short", _cut("cut_fast.mp4", 0.6, frames=60, faststart=True),
         says=("damaged after frame",)),
    Case("garbage in the middle", _garbage_in_the_middle, says=("could not be decoded",)),
    Case("garbage in the middle, strict", _garbage_in_the_middle, args=("--strict",), exit=1, says=("strict",)),
    Case("odd frame size", _clip("odd.mp4", frames=12, size=(63, 47), pix_fmt="yuv444p")),
    Case("one frame", _clip("one.mp4", frames=1)),
    Case("variable frame rate", _clip("vfr.mp4", pts=media.VFR_PTS, time_base=Fraction(1, 1000))),
    Case("portrait phone video", _clip("rotated.mp4", frames=12, size=(64, 48), rotation=90)),
    Case("PCM sound into mp4", _clip("pcm.mkv", frames=12, audio="pcm_s16le")),
    Case("two tracks and subtitles into mkv", _two_tracks_and_subtitles, output="out.mkv"),
    Case("subtitles into mp4", _two_tracks_and_subtitles, says=("left out ssa subtitles",)),
    Case("sound into gif", _clip("sound.mp4", frames=12), output="out.gif", says=("left out sound",)),
    Case("webm output", _clip("to_webm.mp4", frames=12), output="out.webm"),
    Case("video into an image name", _clip("v.mp4", frames=6), output="out.png", exit=1, says=("out.png",)),
    Case("unknown output extension", _clip("u.mp4", frames=6), output="out.xyz", exit=1, says=("out.xyz",)),
    Case("start past the end", _clip("short.mp4", frames=12), args=("--start", "30"), exit=1, says=("no frame from",)),
    # images
    Case("empty png", _bytes("empty.png", b""), output="out.png", exit=1, says=("empty file",)),
    Case("text as png", _bytes("text.png", b"not a picture\n" * 20), output="out.png", exit=1, says=("text.png",)),
    Case("truncated png", _truncated_image("cut.png", ".png"), output="out.png", exit=1, says=("cut.png",)),
    Case("truncated jpeg", _truncated_image("cut.jpg", ".jpg"), output="out.png", exit=1, says=("cut.jpg",)),
    Case("1x1 image", _image("tiny.png", RGB[:1, :1]), output="out.png"),
    Case("16-bit grey png", _image("grey16.png", GREY16), output="out.png"),
    Case("RGBA png into png", _image("rgba.png", RGBA), output="out.png"),
    Case("RGBA png into jpeg", _image("rgba2.png", RGBA), output="out.jpg", says=("left out the transparency",)),
    Case("image bomb", _bytes("bomb.png", _png_declaring(40000, 40000)), output="out.png", exit=1,
         says=("megapixels, over the limit",)),
    Case("webp", _image("in.webp", cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR)), output="out.webp"),
    Case("tiff", _image("in.tiff", cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR)), output="out.tiff"),
    Case("bmp", _image("in.bmp", cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR)), output="out.bmp"),
    Case("image into a video name", _image("i.png", RGB), output="out.mp4", exit=1, says=("out.mp4",)),
    Case("output folder missing", _image("m.png", RGB), output="nowhere/out.png", exit=1, says=("does not exist",)),
    Case("output is the input", _image("same.png", RGB), output="same.png", exit=1, says=("output is the input",),
         output_written=True),
    Case("output unwritable (/proc)", _image("p.png", RGB), output="/proc/out.png", exit=1, says=("cannot write",)),
    # folders
    Case("folder with subfolders, junk and a broken file", _folder, output="album_out", exit=1,
         says=("neither images nor videos", "broken.png", "1 of 3 files failed"), output_written=True),
    # weights
    Case("random bytes as weights", _weights("junk.pt", np.random.default_rng(2).bytes(5000)), exit=1,
         args=("--style", "{dir}/junk.pt"), says=("junk.pt",)),
    Case("empty weights", _weights("empty.pt", b""), exit=1, args=("--style", "{dir}/empty.pt"), says=("empty",)),
    Case("broken ONNX weights", _weights("bad.onnx", b"not onnx" * 50), exit=1, args=("--style", "{dir}/bad.onnx"),
         says=("not a loadable ONNX model",)),
    Case("unknown style name", _clip("s.mp4", frames=6), exit=1, args=("--style", "no-such-style"),
         says=("unknown style",)),
]


def leftovers(folder: Path) -> list[str]:
    """Temporary or staging files anywhere under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if ".partial" in p.name or
                  p.name.endswith((".part", ".staging")))


def inputs_digest(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}

