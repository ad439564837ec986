"""Bad input: one clean error line, exit code 1, nothing written, input untouched."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import media
from media import PAPRIKA, partial_files, probe, sha256


def assert_clean_failure(rc: int, err: str, *, names: str, output: Path, inputs: list[Path] = (),
                         before: dict | None = None):
    assert rc == 1
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("animestream: error:"), lines[0]
    assert names in lines[0], f"{names!r} not named in {lines[0]!r}"
    assert not output.exists() or (before is not None and output in before), f"{output} was written"
    if output.parent.is_dir():
        assert partial_files(output.parent) == []
    for path, digest in (before or {}).items():
        assert sha256(path) == digest, f"{path} changed"


def _bad(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_missing_file(tmp_path, tiny_style, cli):
    out = tmp_path / "out.mp4"
    rc, _, err = cli(tmp_path / "nope.mp4", out, "--style", tiny_style, "--max-side", 64)
    assert_clean_failure(rc, err, names="nope.mp4", output=out)
    assert "no such file" in err


@pytest.mark.parametrize("name,data", [
    ("empty.mp4", b""),
    ("random.mp4", os.urandom(20_000)),
    ("text.mp4", b"this is a text file, not a video\n" * 200),
    ("empty.png", b""),
    ("text.png", b"not a picture\n" * 10),
])
def test_unreadable_input(tmp_path, tiny_style, cli, name, data):
    src = _bad(tmp_path, name, data)
    before = {src: sha256(src)}
    out = tmp_path / ("out" + src.suffix)
    rc, _, err = cli(src, out, "--style", tiny_style, "--max-side", 64)
    assert_clean_failure(rc, err, names=name, output=out, before=before)


@pytest.mark.parametrize("name", ["audio.m4a", "audio_only.mp4"])
def test_audio_only_input(tmp_path, tiny_style, cli, name):
    src = media.write_audio_only(tmp_path / name, seconds=0.5)
    before = {src: sha256(src)}
    out = tmp_path / "out.mp4"
    rc, _, err = cli(src, out, "--style", tiny_style, "--max-side", 64)
    assert_clean_failure(rc, err, names=name, output=out, before=before)
    assert "no video stream" in err


def test_output_in_a_missing_folder(tmp_path, clip, tiny_style, cli):
    out = tmp_path / "missing" / "out.mp4"
    rc, _, err = cli(clip, out, "--style", tiny_style, "--max-side", 64)
    assert_clean_failure(rc, err, names="out.mp4", output=out)
    assert not out.parent.exists()


@pytest.mark.parametrize("spelling", ["same", "dot", "absolute"])
def test_output_equal_to_input_leaves_the_input_alone(tmp_path, tiny_style, cli, monkeypatch, spelling):
    src = media.write_clip(tmp_path / "mine.mp4", frames=5)
    digest = sha256(src)
    monkeypatch.chdir(tmp_path)
    args = {"same": ("mine.mp4", "mine.mp4"), "dot": ("mine.mp4", "./mine.mp4"),
            "absolute": ("mine.mp4", str(src))}[spelling]
    rc, _, err = cli(*args, "--style", tiny_style, "--max-side", 64)
    assert rc == 1 and "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("animestream: error:") and "mine.mp4" in err
    assert sha256(src) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.mp4"]


def test_output_equal_to_input_image(tmp_path, tiny_style, cli):
    src = media.write_image(tmp_path / "pic.png")
    digest = sha256(src)
    rc, _, err = cli(src, src, "--style", tiny_style)
    assert rc == 1 and len(err.splitlines()) == 1 and "pic.png" in err
    assert sha256(src) == digest


def test_video_into_an_image_extension(tmp_path, clip, tiny_style, cli):
    out = tmp_path / "out.txt"
    rc, _, err = cli(clip, out, "--style", tiny_style, "--max-side", 64)
    assert_clean_failure(rc, err, names="out.txt", output=out)


def test_unknown_style_name(tmp_path, clip, cli):
    out = tmp_path / "out.mp4"
    rc, _, err = cli(clip, out, "--style", "no-such-style")
    assert_clean_failure(rc, err, names="no-such-style", output=out)
    assert "paprika" in err  # it says which styles exist


def test_random_bytes_as_weights(tmp_path, clip, cli):
    weights_file = _bad(tmp_path, "random.pt", os.urandom(10_000))
    out = tmp_path / "out.mp4"
    rc, _, err = cli(clip, out, "--style", weights_file)
    assert_clean_failure(rc, err, names="random.pt", output=out)


@pytest.mark.parametrize("which", ["tiny", "paprika"])
def test_truncated_weights(tmp_path, clip, tiny_style, cli, which):
    data = (tiny_style if which == "tiny" else PAPRIKA).read_bytes()
    weights_file = _bad(tmp_path, f"cut_{which}.pt", data[: len(data) * 6 // 10])
    out = tmp_path / "out.mp4"
    rc, _, err = cli(clip, out, "--style", weights_file)
    assert_clean_failure(rc, err, names=f"cut_{which}.pt", output=out)


def test_empty_and_missing_weights(tmp_path, clip, cli):
    out = tmp_path / "out.mp4"
    empty = _bad(tmp_path, "empty.pt", b"")
    rc, _, err = cli(clip, out, "--style", empty)
    assert_clean_failure(rc, err, names="empty.pt", output=out)
    rc, _, err = cli(clip, out, "--style", tmp_path / "absent.pt")
    assert_clean_failure(rc, err, names="absent.pt", output=out)


def test_truncated_mp4_with_moov_at_the_end_fails_cleanly(tmp_path, tiny_style, cli):
    """Default (non-faststart) MP4 cut in half: the index is gone, the container cannot be opened."""
    whole = media.write_clip(tmp_path / "whole.mp4", frames=60)
    data = whole.read_bytes()
    assert data.find(b"moov") > len(data) // 2  # moov really is at the end
    src = _bad(tmp_path, "half.mp4", data[: len(data) // 2])
    out = tmp_path / "out.mp4"
    rc, _, err = cli(src, out, "--style", tiny_style, "--max-side", 64, "-q")
    assert_clean_failure(rc, err, names="half.mp4", output=out, before={src: sha256(src)})


def test_truncated_faststart_mp4_converts_what_decodes_and_warns(tmp_path, faststart_clip, tiny_style, cli):
    """Faststart MP4 cut at 70%: it opens, decoding ends early; the frames that decoded are written
    and a warning says the input is damaged."""
    data = faststart_clip.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # moov really is at the front
    src = _bad(tmp_path, "cut70.mp4", data[: len(data) * 7 // 10])
    out = tmp_path / "out.mp4"
    rc, _, err = cli(src, out, "--style", tiny_style, "--max-side", 64, "-q")
    assert rc == 0, err
    assert "Traceback" not in err
    total = probe(faststart_clip).frames
    written = probe(out, audio=False).frames
    assert 0 < written < total
    warnings = [line for line in err.splitlines() if "damaged" in line]
    assert len(warnings) == 1, f"no 'damaged' warning on stderr: {err!r}"
    assert "cut70.mp4" in warnings[0]
    assert partial_files(tmp_path) == []


def test_truncated_mp4_copies_no_broken_audio_packet(tmp_path, faststart_clip, tiny_style, cli):
    """The last audio packet of a cut file is partial (FFmpeg flags it corrupt); copying it makes
    an output whose audio does not decode."""
    data = faststart_clip.read_bytes()
    src = _bad(tmp_path, "cut70.mp4", data[: len(data) * 7 // 10])
    out = tmp_path / "out.mp4"
    rc, _, err = cli(src, out, "--style", tiny_style, "--max-side", 64, "-q")
    assert rc == 0, err
    assert probe(out).audio_errors == 0


def test_mp4_cut_before_the_first_frame_is_an_error_not_a_success(tmp_path, faststart_clip, tiny_style, cli):
    """The header opens but no frame decodes: reporting 'wrote out.mp4 (0 frames)' with exit 0 while
    nothing is written is wrong; it must be a clean error."""
    data = faststart_clip.read_bytes()
    src = _bad(tmp_path, "header_only.mp4", data[: data.find(b"mdat") + 64])
    out = tmp_path / "out.mp4"
    rc, _, err = cli(src, out, "--style", tiny_style, "--max-side", 64, "-q")
    assert_clean_failure(rc, err, names="header_only.mp4", output=out)


def test_error_message_is_a_single_line_even_for_ffmpeg_errors(tmp_path, tiny_style, cli):
    src = _bad(tmp_path, "noise.mkv", os.urandom(4096))
    rc, _, err = cli(src, tmp_path / "o.mkv", "--style", tiny_style)
    assert rc == 1
    assert re.fullmatch(r"animestream: error: .*noise\.mkv.*\n", err)
