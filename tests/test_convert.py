"""Video, image and folder conversion: frames, timestamps, size and audio survive."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

import media
from media import VFR_PTS, animestream_threads, partial_files, probe
from stream.filejob import convert, convert_video

STATS_KEYS = {"frames_in", "frames_out", "dropped", "wall_s", "fps", "latency_ms_p50", "latency_ms_p95",
              "peak_rss_mb", "device", "precision", "max_side", "style"}


def assert_same_video(src, dst, *, audio_tolerance_s: float):
    a, b = probe(src), probe(dst)
    assert b.frames == a.frames
    assert (b.width, b.height) == (a.width, a.height)
    assert len(a.times) == len(b.times)
    worst = max(abs(x - y) for x, y in zip(a.times, b.times))
    assert worst <= 0.001, f"timestamps moved by up to {worst * 1000:.1f} ms"
    assert b.video_codec == "h264"
    assert b.audio_codec is not None, "the audio track was lost"
    assert b.audio_channels == a.audio_channels
    assert b.audio_errors == 0
    assert b.audio_duration == pytest.approx(a.audio_duration, abs=audio_tolerance_s)
    return a, b


def test_convert_video_keeps_frames_timestamps_size_and_audio(tmp_path, clip, tiny_engine):
    out = tmp_path / "out.mp4"
    stats = convert_video(clip, out, tiny_engine, progress=False)
    a, b = assert_same_video(clip, out, audio_tolerance_s=0.005)
    assert a.frames == 30
    assert b.audio_codec == "aac"
    assert stats.frames_in == stats.frames_out == 30
    assert stats.dropped == 0 and not stats.interrupted
    assert stats.extra["audio"] == "copy" and stats.extra["audio_codec"] == "aac"
    assert partial_files(tmp_path) == []
    assert animestream_threads() == []


def test_a_video_job_never_loads_opencv(tmp_path, clip, tiny_style):
    """Frames are scaled by swscale inside decode and encode; OpenCV would cost 25 MB of RSS for nothing."""
    code = ("import sys\nfrom stream.cli import main\n"
            "rc = main(sys.argv[1:])\nprint(rc, 'cv2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(clip), str(tmp_path / "out.mp4"), "--style", str(tiny_style),
                          "--max-side", "32", "--precision", "fp32"], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["0", "False"], out.stderr
    assert probe(tmp_path / "out.mp4").frames == probe(clip).frames


def test_output_frames_are_stylised_not_copied(tmp_path, clip, tiny_engine):
    """Decode both files: the output pictures are the engine's, not the input's."""
    import av
    out = tmp_path / "out.mp4"
    convert_video(clip, out, tiny_engine, progress=False, crf=0)
    with av.open(str(clip)) as c:
        src = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(out)) as c:
        dst = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    for i in (0, 15, 29):
        expected = tiny_engine(src[i]).astype(int)
        # yuv420p chroma subsampling costs a few levels; a copied input would be far off.
        assert np.abs(dst[i].astype(int) - expected).mean() < 6
        assert np.abs(dst[i].astype(int) - src[i].astype(int)).mean() > 20


def test_variable_frame_rate_timestamps_survive(tmp_path, vfr_clip, tiny_engine):
    out = tmp_path / "vfr_out.mp4"
    convert_video(vfr_clip, out, tiny_engine, progress=False)
    a, b = assert_same_video(vfr_clip, out, audio_tolerance_s=0.005)
    assert a.times == pytest.approx([p / 1000 for p in VFR_PTS], abs=1e-9)  # the input really is VFR
    assert b.times == pytest.approx([p / 1000 for p in VFR_PTS], abs=0.001)


def test_pcm_audio_is_transcoded_to_aac_for_mp4(tmp_path, pcm_mkv, tiny_engine):
    out = tmp_path / "from_mkv.mp4"
    stats = convert_video(pcm_mkv, out, tiny_engine, progress=False)
    a, b = assert_same_video(pcm_mkv, out, audio_tolerance_s=0.1)  # AAC pads up to a frame or two
    assert a.audio_codec == "pcm_s16le"
    assert b.audio_codec == "aac"
    assert "mp4" in b.formats
    assert stats.extra["audio"] == "transcode"


def test_pcm_audio_is_copied_into_mkv(tmp_path, pcm_mkv, tiny_engine):
    out = tmp_path / "from_mkv.mkv"
    stats = convert_video(pcm_mkv, out, tiny_engine, progress=False)
    a, b = assert_same_video(pcm_mkv, out, audio_tolerance_s=0.001)
    assert b.audio_codec == "pcm_s16le"
    assert "matroska" in b.formats
    assert stats.extra["audio"] == "copy"


def test_clip_without_audio_gives_video_without_audio(tmp_path, tiny_engine):
    src = media.write_clip(tmp_path / "silent.mp4", frames=10, audio=None)
    out = tmp_path / "silent_out.mp4"
    stats = convert_video(src, out, tiny_engine, progress=False)
    b = probe(out)
    assert b.frames == 10 and b.audio_codec is None
    assert stats.extra["audio"] == "none"


def test_odd_sized_video_keeps_its_size(tmp_path, tiny_engine):
    src = media.write_clip(tmp_path / "odd.mkv", frames=8, size=(66, 50), audio=None)
    # 66x50 is even (x264 yuv420p input); the output must keep it exactly.
    out = tmp_path / "odd_out.mp4"
    convert_video(src, out, tiny_engine, progress=False)
    b = probe(out)
    assert (b.width, b.height, b.frames) == (66, 50, 8)


def test_cli_video_with_stats_json(tmp_path, clip, tiny_style, cli):
    out, stats_path = tmp_path / "cli.mp4", tmp_path / "stats.json"
    rc, stdout, err = cli(clip, out, "--style", tiny_style, "--max-side", 64, "--stats-json", stats_path,
                          "--preset", "ultrafast", "--crf", 30, "--device", "cpu")
    assert rc == 0, err
    assert_same_video(clip, out, audio_tolerance_s=0.005)
    assert f"wrote {out}" in err and "30 frames" in err
    stats = json.loads(stats_path.read_text())
    assert STATS_KEYS <= set(stats)
    assert stats["frames_in"] == stats["frames_out"] == 30
    assert stats["dropped"] == 0
    assert stats["max_side"] == 64
    assert stats["style"] == "tiny"
    assert stats["device"] == "cpu"
    assert stats["precision"] in ("fp32", "bf16")
    assert stats["wall_s"] > 0 and stats["fps"] > 0
    assert stats["fps"] == pytest.approx(30 / stats["wall_s"], rel=0.05)
    assert 0 < stats["latency_ms_p50"] <= stats["latency_ms_p95"]
    assert stats["peak_rss_mb"] > 50
    assert partial_files(tmp_path) == []


def test_cli_quiet_prints_nothing(tmp_path, clip, tiny_style, cli):
    rc, stdout, err = cli(clip, tmp_path / "q.mkv", "--style", tiny_style, "--max-side", 32, "-q")
    assert rc == 0
    assert stdout == "" and err == ""
    assert probe(tmp_path / "q.mkv").frames == 30


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_cli_image_keeps_its_size(tmp_path, tiny_style, tiny_engine, cli, ext):
    src = media.write_image(tmp_path / "in.png", 101, 77)
    out = tmp_path / f"out{ext}"
    rc, _, err = cli(src, out, "--style", tiny_style, "--max-side", 64, "--precision", "fp32", "--device", "cpu",
                     "-q")  # the reference, tiny_engine, runs on the CPU
    assert rc == 0, err
    result = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert result.shape == (77, 101, 3)
    expected = tiny_engine(cv2.cvtColor(cv2.imread(str(src)), cv2.COLOR_BGR2RGB)).astype(int)
    diff = np.abs(result.astype(int) - expected)
    if ext == ".png":
        assert diff.max() <= 1  # lossless: exactly the engine's picture
    else:
        assert diff.mean() < 8
    assert partial_files(tmp_path) == []


def test_cli_folder_converts_images_and_videos_and_skips_the_rest(tmp_path, tiny_style, cli):
    src = tmp_path / "in"
    src.mkdir()
    media.write_image(src / "a.png", 64, 48)
    media.write_image(src / "b.jpg", 50, 30, i=3)
    media.write_clip(src / "c.mp4", frames=6)
    (src / "notes.txt").write_text("not media\n")
    dst = tmp_path / "out"
    rc, _, err = cli(src, dst, "--style", tiny_style, "--max-side", 64, "-q")
    assert rc == 0, err
    assert sorted(p.name for p in dst.iterdir()) == ["a.png", "b.jpg", "c.mp4"]
    assert cv2.imread(str(dst / "a.png")).shape == (48, 64, 3)
    assert cv2.imread(str(dst / "b.jpg")).shape == (30, 50, 3)
    assert probe(dst / "c.mp4").frames == 6
    assert sorted(p.name for p in src.iterdir()) == ["a.png", "b.jpg", "c.mp4", "notes.txt"]  # input untouched


def test_folder_with_a_bad_file_converts_the_rest_and_fails(tmp_path, tiny_engine):
    from stream.errors import SourceError
    src = tmp_path / "in"
    src.mkdir()
    media.write_image(src / "good.png", 32, 32)
    (src / "bad.mp4").write_bytes(b"definitely not a video" * 50)
    warnings: list[str] = []
    with pytest.raises(SourceError, match="1 of 2"):
        convert(src, tmp_path / "out", tiny_engine, progress=False, warn=warnings.append)
    assert (tmp_path / "out" / "good.png").exists()
    assert not (tmp_path / "out" / "bad.mp4").exists()
    assert len(warnings) == 1 and "bad.mp4" in warnings[0]


def test_default_style_converts_a_short_clip(tmp_path, cli):
    """The real built-in style end to end (kept tiny: 32 px cap, 6 frames)."""
    src = media.write_clip(tmp_path / "six.mp4", frames=6)
    out = tmp_path / "six_anime.mp4"
    rc, _, err = cli(src, out, "--max-side", 32, "-q")
    assert rc == 0, err
    assert_same_video(src, out, audio_tolerance_s=0.005)


def test_a_cpu_model_gets_a_one_thread_encoder(tmp_path, clip, tiny_engine, monkeypatch):
    convert_module = importlib.import_module("stream.filejob")
    from stream.sinks import VideoFileSink
    seen = {}

    class SpySink(VideoFileSink):
        def __init__(self, *args, **kwargs):
            seen["threads"] = kwargs["threads"]
            super().__init__(*args, **kwargs)
            seen["options"] = dict(self._video.options)

    monkeypatch.setattr(convert_module, "VideoFileSink", SpySink)
    convert_video(clip, tmp_path / "out.mp4", tiny_engine, progress=False)
    assert seen["threads"] == 1 and seen["options"]["threads"] == "1"
    with pytest.raises(ValueError, match="threads must be >= 0"):
        VideoFileSink(tmp_path / "x.mp4", width=64, height=48, time_base=media.Fraction(1, 24),
                      rate=media.Fraction(24), threads=-1)


@pytest.mark.parametrize("rotation", [-90, 90, 180])
def test_a_phone_video_s_display_rotation_comes_out_upright(tmp_path, tiny_engine, rotation):
    """Phones store portrait video as landscape pictures plus a display matrix. The output must look
    like what a player shows for the input (OpenCV applies the matrix: an independent reference),
    without a matrix of its own that would turn it once more."""
    import av
    src = media.write_clip(tmp_path / "phone.mp4", frames=6, size=(64, 48), rotation=rotation)
    capture = cv2.VideoCapture(str(src))
    ok, shown = capture.read()
    capture.release()
    assert ok and shown.shape[:2] == ((64, 48) if rotation % 180 else (48, 64))
    out = tmp_path / "out.mp4"
    convert_video(src, out, tiny_engine, progress=False, crf=0)
    with av.open(str(out)) as c:
        first = next(c.decode(video=0))
        assert first.rotation == 0
        got = first.to_ndarray(format="rgb24").astype(int)
    expected = tiny_engine(cv2.cvtColor(shown, cv2.COLOR_BGR2RGB)).astype(int)
    assert got.shape == expected.shape
    assert np.abs(got - expected).mean() < 6
    assert np.abs(got - np.rot90(expected, 2)).mean() > 20  # a turn the wrong way would be caught


def test_a_webm_output_is_vp9_with_opus_sound(tmp_path, clip, tiny_engine):
    """WebM takes neither H.264 nor AAC: the video is VP9 and the sound Opus, resampled to 48 kHz."""
    out = tmp_path / "out.webm"
    stats = convert_video(clip, out, tiny_engine, progress=False, preset="ultrafast")
    a, b = probe(clip), probe(out)
    assert "webm" in b.formats and (b.video_codec, b.audio_codec) == ("vp9", "opus")
    assert (b.width, b.height, len(b.times)) == (a.width, a.height, len(a.times))
    assert max(abs(x - y) for x, y in zip(a.times, b.times)) <= 0.001  # WebM counts milliseconds
    assert b.audio_errors == 0 and b.audio_duration == pytest.approx(a.audio_duration, abs=0.03)
    assert stats.extra["audio"] == "transcode"
    assert partial_files(tmp_path) == []


def test_an_image_follows_its_exif_orientation(tmp_path, tiny_engine):
    """A camera JPEG stored landscape with orientation 6 ("turn 90° clockwise") is a portrait."""
    from PIL import Image
    stored = media.frame_image(3, 64, 48)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "camera.jpg", quality=98, exif=exif.tobytes())
    convert(tmp_path / "camera.jpg", tmp_path / "out.png", tiny_engine)
    got = cv2.cvtColor(cv2.imread(str(tmp_path / "out.png")), cv2.COLOR_BGR2RGB).astype(int)
    expected = tiny_engine(np.rot90(stored, -1).copy()).astype(int)
    assert got.shape == (64, 48, 3)
    assert np.abs(got - expected).mean() < 6
    assert np.abs(got - np.rot90(expected, 2)).mean() > 20
