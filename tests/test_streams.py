"""Nothing is lost silently: every sound track, subtitles where the container takes them, GIFs, folder trees,
transparency; what an output cannot hold is named in a warning."""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

import media


def _tracks(path: Path) -> list[tuple[str, str]]:
    with av.open(str(path)) as c:
        return [(s.type, s.codec_context.name) for s in c.streams]


def _audio_seconds(path: Path) -> list[float]:
    """Seconds of decoded sound in each audio track."""
    out = []
    with av.open(str(path)) as c:
        indices = [a.index for a in c.streams.audio]
    for index in indices:
        with av.open(str(path)) as c:
            stream = c.streams[index]
            samples = sum(f.samples for p in c.demux(stream) for f in p.decode())
            out.append(samples / stream.codec_context.sample_rate)
    return out


@pytest.fixture(scope="module")
def rich_mkv(media_dir) -> Path:
    """48 frames at 24 fps with two sound tracks (AAC, PCM) and an ASS subtitle track saying 'hello'."""
    path = media.write_tracks_and_subtitles(media_dir / "rich.mkv")
    assert [t for t, _ in _tracks(path)] == ["video", "audio", "audio", "subtitle"]
    return path


def test_every_sound_track_and_the_subtitles_are_kept(rich_mkv, tiny_style, cli, tmp_path):
    out = tmp_path / "out.mkv"
    rc, _, err = cli(rich_mkv, out, "--style", tiny_style, "--max-side", 32, "-q")
    assert rc == 0 and "warning" not in err, err
    assert _tracks(out) == [("video", "h264"), ("audio", "aac"), ("audio", "pcm_s16le"), ("subtitle", "ssa")]
    assert all(abs(s - 2.0) < 0.05 for s in _audio_seconds(out))
    with av.open(str(out)) as c:
        texts = [bytes(p) for p in c.demux(c.streams.subtitles[0]) if p.size]
    assert texts and b"hello" in texts[0]


def test_an_mp4_output_reencodes_what_it_cannot_copy_and_names_what_it_drops(rich_mkv, tiny_style, cli, tmp_path):
    out = tmp_path / "out.mp4"
    rc, _, err = cli(rich_mkv, out, "--style", tiny_style, "--max-side", 32, "-q")
    assert rc == 0, err
    assert _tracks(out) == [("video", "h264"), ("audio", "aac"), ("audio", "aac")]  # PCM became AAC
    assert all(abs(s - 2.0) < 0.1 for s in _audio_seconds(out))
    assert err.count("\n") == 1 and "warning:" in err and "ssa subtitles" in err and "mp4 cannot hold them" in err


def test_gifs_are_converted_as_animations(tmp_path, tiny_style, cli):
    src = tmp_path / "in.gif"
    with av.open(str(src), "w") as out:
        v = out.add_stream("gif", rate=10)
        v.width, v.height, v.pix_fmt = 64, 48, "rgb8"
        for i in range(8):
            frame = av.VideoFrame.from_ndarray(media.frame_image(i, 64, 48), format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    rc, _, err = cli(src, tmp_path / "out.gif", "--style", tiny_style, "--max-side", 32, "-q")
    assert rc == 0, err
    got = media.probe(tmp_path / "out.gif", audio=False)
    assert (got.frames, got.width, got.height) == (8, 64, 48)
    assert got.times == media.probe(src, audio=False).times
    rc, _, err = cli(src, tmp_path / "out.mp4", "--style", tiny_style, "--max-side", 32, "-q")
    assert rc == 0 and media.probe(tmp_path / "out.mp4", audio=False).frames == 8


def test_a_gif_output_names_the_sound_it_cannot_hold(tmp_path, clip, tiny_style, cli):
    rc, _, err = cli(clip, tmp_path / "out.gif", "--style", tiny_style, "--max-side", 32, "-q")
    assert rc == 0 and "left out sound" in err and "GIF has none" in err


def test_folders_are_converted_with_their_subfolders_mirrored(tmp_path, clip, tiny_style, cli):
    src, dst = tmp_path / "in", tmp_path / "out"
    (src / "trip" / "day1").mkdir(parents=True)
    (src / ".cache").mkdir()
    media.write_image(src / "top.png")
    media.write_image(src / "trip" / "day1" / "beach.jpg")
    (src / "trip" / "clip.mp4").write_bytes(clip.read_bytes())
    media.write_image(src / ".cache" / "hidden.png")
    (src / "trip" / "notes.txt").write_text("not a picture")
    rc, _, err = cli(src, dst, "--style", tiny_style, "--max-side", 32, "-q")
    assert rc == 0, err
    assert sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file()) == [
        "top.png", "trip/clip.mp4", "trip/day1/beach.jpg"]
    assert "1 files are neither images nor videos" in err and "notes.txt" in err
    flat = tmp_path / "flat"
    rc, _, err = cli(src, flat, "--style", tiny_style, "--max-side", 32, "-q", "--no-recursive")
    assert rc == 0 and sorted(p.name for p in flat.iterdir()) == ["top.png"]


@pytest.mark.parametrize("ext", [".png", ".webp", ".tiff"])
def test_transparency_is_carried_through_to_outputs_that_hold_it(tmp_path, tiny_style, cli, ext):
    rgba = np.dstack([media.frame_image(0, 64, 48), np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))])
    src = tmp_path / "in.png"
    assert cv2.imwrite(str(src), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    out = tmp_path / f"out{ext}"
    params = ["--style", tiny_style, "--max-side", 64, "-q"]
    rc, _, err = cli(src, out, *params)
    assert rc == 0 and "warning" not in err, err
    got = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert got.shape == (48, 64, 4)
    assert np.array_equal(got[..., 3], rgba[..., 3])  # the alpha channel, untouched (lossless formats)
    rc, _, err = cli(src, tmp_path / "out.jpg", *params)
    assert rc == 0 and "left out the transparency (JPG has none" in err
