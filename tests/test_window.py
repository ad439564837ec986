"""--start / --duration: a stretch of a video, with its own sound, timed from 0."""
from __future__ import annotations

import av
import numpy as np
import pytest

import media
from media import partial_files, probe
from stream.cli import _seconds
from stream.filejob import convert_video
from test_errors import assert_clean_failure

FPS = 24


@pytest.fixture(scope="module")
def two_seconds(media_dir):
    """48 frames at 24 fps, 64x48, with AAC sound, each frame a different picture."""
    return media.write_clip(media_dir / "two_seconds.mp4", frames=2 * FPS, fps=FPS)


def _first_sound_s(path) -> float:
    with av.open(str(path)) as c:
        packet = next(p for p in c.demux(c.streams.audio[0]) if p.pts is not None)
        return float(packet.pts * packet.time_base)


def _frames(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]


def test_a_window_keeps_its_frames_and_sound_and_starts_at_zero(tmp_path, two_seconds, tiny_engine):
    out = tmp_path / "out.mp4"
    stats = convert_video(two_seconds, out, tiny_engine, progress=False, crf=0, start=0.5, duration=1.0)
    p = probe(out)
    assert stats.frames_out == len(p.times) == FPS
    assert p.times == pytest.approx([i / FPS for i in range(FPS)], abs=0.001)
    assert p.audio_codec == "aac" and p.audio_errors == 0
    assert p.audio_duration == pytest.approx(1.0, abs=0.05)
    assert _first_sound_s(out) == pytest.approx(0.0, abs=0.03)  # in step with the pictures
    source, got = _frames(two_seconds), _frames(out)
    for i in (0, FPS - 1):  # the output's frame i is the source's frame 12 + i, stylised
        expected = tiny_engine(source[FPS // 2 + i].astype(np.uint8)).astype(int)
        assert np.abs(got[i] - expected).mean() < 6
        neighbour = tiny_engine(source[FPS // 2 + i + 3].astype(np.uint8)).astype(int)
        assert np.abs(got[i] - neighbour).mean() > np.abs(got[i] - expected).mean() + 2


def test_start_alone_runs_to_the_end_and_sound_is_cut_to_match(tmp_path, pcm_mkv, tiny_engine):
    """Re-encoded sound (PCM into MP4) is trimmed as well as copied sound is."""
    out = tmp_path / "out.mp4"
    convert_video(pcm_mkv, out, tiny_engine, progress=False, start=0.25)
    a, b = probe(pcm_mkv), probe(out)
    assert len(b.times) == len(a.times) - 6  # 20 frames at 24 fps: 6 start before 0.25 s, frame 6 at it
    assert b.times == pytest.approx([t - 0.25 for t in a.times[6:]], abs=0.001)
    assert b.audio_codec == "aac" and b.audio_errors == 0
    assert b.audio_duration == pytest.approx(a.audio_duration - 0.25, abs=0.05)


def test_the_cli_converts_a_window(tmp_path, two_seconds, tiny_style, cli):
    out = tmp_path / "out.mp4"
    rc, _, err = cli(two_seconds, out, "--style", tiny_style, "--start", "0:01", "--duration", "0.5", "-q")
    assert rc == 0, err
    assert len(probe(out).times) == FPS // 2


def test_a_start_past_the_end_is_one_clear_error_and_writes_nothing(tmp_path, two_seconds, tiny_style, cli):
    out = tmp_path / "out.mp4"
    rc, _, err = cli(two_seconds, out, "--style", tiny_style, "--start", "5", "-q")
    assert_clean_failure(rc, err, names="no frame from 5 s on (the video is 2.00 s long)", output=out)
    assert partial_files(tmp_path) == []


@pytest.mark.parametrize("args, message", [
    (["--start", "1:75"], "expected seconds"),
    (["--start", "-3"], "expected seconds"),
    (["--duration", "0"], "--duration must be more than 0 seconds"),
])
def test_bad_times_are_usage_errors(tmp_path, two_seconds, tiny_style, cli, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        cli(two_seconds, tmp_path / "out.mp4", "--style", tiny_style, *args)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_a_window_needs_one_video_file(tmp_path, tiny_style, cli, capsys):
    image = media.write_image(tmp_path / "pic.png")
    with pytest.raises(SystemExit) as e:
        cli(image, tmp_path / "out.png", "--style", tiny_style, "--duration", "3")
    assert e.value.code == 2
    assert "apply to converting one video file" in capsys.readouterr().err


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90.5", 90.5), ("1:30", 90), ("0:01:30.5", 90.5),
                                           ("1:00:00", 3600)])
def test_times_read_as_seconds_or_clock_time(text, seconds):
    assert _seconds(text) == seconds
