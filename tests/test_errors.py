"""Bad input: one clean error line, exit code 1, nothing written, input untouched."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import media
from media import SHINKAI, partial_files, probe, sha256


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
    assert "shinkai" in err  # it says which styles exist


def test_random_bytes_as_weights(tmp_path, clip, cli):
    weights_file = _bad(tmp_path, "random.pt", os.urandom(10_000))
    out = tmp_path / "out.mp4"
    rc, _, err = cli(clip, out, "--style", weights_file)
    assert_clean_failure(rc, err, names="random.pt", output=out)


@pytest.mark.parametrize("which", ["tiny", "shinkai"])
def test_truncated_weights(tmp_path, clip, tiny_style, cli, which):
    data = (tiny_style if which == "tiny" else SHINKAI).read_bytes()
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


def _png_declaring(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR declaring width x height, with one tiny (truncated) IDAT."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("args", [(), ("--max-pixels", "1000")])
def test_an_image_bomb_is_refused_from_its_header(tmp_path, tiny_style, cli, args):
    src = _bad(tmp_path, "bomb.png", _png_declaring(40000, 40000) if not args else _png_declaring(40, 40))
    out = tmp_path / "out.png"
    rc, _, err = cli(src, out, "--style", tiny_style, *args)
    assert_clean_failure(rc, err, names="bomb.png", output=out)
    assert "megapixels, over the limit" in err


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tiff", ".gif"])
def test_header_sizes_agree_with_the_decoder(tmp_path, ext):
    import cv2
    from PIL import Image

    from stream.imageinfo import header_size

    path = tmp_path / f"a{ext}"
    rgb = media.frame_image(0, 53, 37)
    if ext == ".gif":
        Image.fromarray(rgb).save(path)
    else:
        assert cv2.imwrite(str(path), rgb)
    assert header_size(path) == (53, 37)


def test_an_image_job_reports_real_statistics(tmp_path, tiny_style, cli):
    import json

    src = media.write_image(tmp_path / "in.png", 64, 48)
    rc, _, err = cli(src, tmp_path / "out.png", "--style", tiny_style, "--stats-json", tmp_path / "s.json")
    assert rc == 0
    assert re.search(r"wrote .*out\.png \(1 frame in \d+\.\d\d s, \d+ ms in the model\)", err), err
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["frames_out"] == 1 and stats["wall_s"] > 0 and stats["fps"] > 0
    assert 0 < stats["latency_ms_p95"] <= stats["wall_s"] * 1000 and stats["peak_rss_mb"] > 50


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_signal_while_starting_up_prints_no_traceback(tmp_path, signame):
    import signal
    import subprocess
    import sys
    import time

    src = media.write_image(tmp_path / "in.png")
    proc = subprocess.Popen([sys.executable, "-m", "stream", str(src), str(tmp_path / "out.png")], cwd=media.ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the child is inside PyTorch's import (its libraries mapped)
        try:
            if "libtorch" in Path(f"/proc/{proc.pid}/maps").read_text():
                break
        except OSError:
            pass
        time.sleep(0.01)
    signum = getattr(signal, signame)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err  # never killed by the signal itself (a negative code)
    assert b"Traceback" not in err and err.count(b"\n") == 1
    assert not (tmp_path / "out.png").exists()


def test_a_resolution_that_would_not_fit_in_memory_is_refused_with_a_cap_that_would(tmp_path, tiny_style, cli,
                                                                                      monkeypatch):
    from stream import engine as engine_module

    monkeypatch.setattr(engine_module, "available_memory_bytes", lambda device: 2**20)  # 1 MiB free
    src = media.write_image(tmp_path / "big.png", 640, 480)
    out = tmp_path / "out.png"
    rc, _, err = cli(src, out, "--style", tiny_style, "--max-side", 0)
    assert_clean_failure(rc, err, names="GiB at 640x480", output=out)
    side = int(re.search(r"max_side (\d+)", err).group(1))
    assert 8 <= side < 640
    rc, _, err = cli(src, out, "--style", tiny_style, "--max-side", side)
    assert rc == 0, err


@pytest.fixture(scope="module")
def damaged_in_the_middle(tmp_path_factory) -> tuple[Path, list[float]]:
    """96 frames of 128x96 with 20 KB of garbage written over the middle of the picture data."""
    folder = tmp_path_factory.mktemp("damaged")
    clip = media.write_clip(folder / "clean.mp4", frames=96, size=(128, 96))
    data = bytearray(clip.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 20_000] = os.urandom(20_000)
    damaged = folder / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    return damaged, probe(clip).times


def test_damage_in_the_middle_skips_what_does_not_decode_and_keeps_the_rest(damaged_in_the_middle, tiny_style,
                                                                           cli, tmp_path):
    import json

    src, clean_times = damaged_in_the_middle
    out = tmp_path / "out.mp4"
    rc, _, err = cli(src, out, "--style", tiny_style, "--max-side", 64, "-q", "--stats-json", tmp_path / "s.json")
    assert rc == 0 and "Traceback" not in err, err
    stats = json.loads((tmp_path / "s.json").read_text())
    m = re.search(r"(\d+) frames could not be decoded", err)
    assert m and int(m.group(1)) == stats["undecodable"] > 0, err
    result = probe(out)
    assert result.frames == stats["frames_out"] > 48  # not stopped at the damage
    assert result.times == sorted(result.times)
    assert all(any(abs(t - c) < 1e-3 for c in clean_times) for t in result.times)  # good frames keep their times
    rc, _, err = cli(src, tmp_path / "strict.mp4", "--style", tiny_style, "--max-side", 64, "-q", "--strict")
    assert_clean_failure(rc, err, names="could not be decoded", output=tmp_path / "strict.mp4")


@pytest.mark.parametrize("name", ["o.png", "o.mp4"])
def test_an_output_the_system_refuses_is_one_line(tmp_path, clip, tiny_style, cli, name):
    src = clip if name.endswith(".mp4") else media.write_image(tmp_path / "in.png")
    rc, _, err = cli(src, f"/proc/{name}", "--style", tiny_style, "--max-side", 32, "-q")
    assert_clean_failure(rc, err, names=f"/proc/{name}: cannot write it", output=Path(f"/proc/{name}"))


def test_a_full_disk_while_writing_an_image_is_one_line(tmp_path, tiny_style, cli, monkeypatch):
    import errno

    from stream import sinks

    def full(path, data):
        Path(path).write_bytes(data[: len(data) // 2])  # half of it made it to disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sinks, "_write_bytes", full)
    out = tmp_path / "out.png"
    rc, _, err = cli(media.write_image(tmp_path / "in.png"), out, "--style", tiny_style, "-q")
    assert_clean_failure(rc, err, names="No space left on device", output=out)


def _run_or_skip(*cmd: str) -> None:
    import subprocess

    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"{' '.join(cmd)}: not permitted here ({done.stderr.strip()[:80]})")


def _open_files_under(folder: Path) -> list[str]:
    """What this process's open file descriptors point to under ``folder`` (Linux's /proc)."""
    held = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # the listing's own descriptor, closed by now
            continue
        if target.startswith(f"{folder}/"):
            held.append(target)
    return held


@pytest.fixture
def refusing_folder(tmp_path, request):
    """A folder the file system refuses to write into: immutable (EPERM), read-only (EROFS) or nearly full
    (ENOSPC: a 64 KiB tmpfs). Needs root's chattr and mount; skipped where they are not permitted."""
    import shutil

    kind = request.param
    folder = tmp_path / kind
    folder.mkdir()
    if kind == "immutable":
        if not shutil.which("chattr"):
            pytest.skip("no chattr")
        _run_or_skip("chattr", "+i", str(folder))
        yield folder, "Operation not permitted"
        _run_or_skip("chattr", "-i", str(folder))
    else:
        options = "ro,size=64k" if kind == "read-only" else "size=64k"
        _run_or_skip("mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder))
        yield folder, "Read-only file system" if kind == "read-only" else "No space left on device"
        import subprocess
        done = subprocess.run(["umount", str(folder)], capture_output=True, text=True)
        assert done.returncode == 0, f"the folder is still in use: {done.stderr.strip()}"


@pytest.mark.parametrize("refusing_folder", ["immutable", "read-only", "full"], indirect=True)
@pytest.mark.parametrize("name", ["o.png", "o.mp4"])
def test_a_folder_the_file_system_refuses_is_one_line_and_leaves_nothing(refusing_folder, tmp_path, long_clip,
                                                                        tiny_style, cli, name):
    folder, reason = refusing_folder
    src = long_clip if name.endswith(".mp4") else media.write_image(tmp_path / "in.png", 640, 480, i=3)
    rc, _, err = cli(src, folder / name, "--style", tiny_style, "--max-side", 64, "-q", "--crf", 0)
    assert_clean_failure(rc, err, names=reason, output=folder / name)
    assert list(folder.iterdir()) == []
    assert _open_files_under(folder) == []  # none of the failed job's files left open (a deleted one keeps its space)


def test_a_torchscript_file_that_is_not_a_generator_is_refused_at_load(tmp_path, clip, cli):
    import torch

    class Classifier(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))  # N x 3: not a picture

    path = tmp_path / "classifier.pt"
    torch.jit.script(Classifier()).save(str(path))
    out = tmp_path / "out.mp4"
    rc, _, err = cli(clip, out, "--style", path, "--max-side", 32)
    assert_clean_failure(rc, err, names="classifier.pt: not a picture-to-picture generator", output=out)
    rc, _, err = cli("weights", "import", path, "--name", "classifier")
    assert rc == 1 and err.count("\n") == 1 and "not a picture-to-picture generator" in err


def test_one_corrupt_sidecar_hides_nothing_else(tmp_path, tiny_model, clip, cli):
    from stream import weights

    folder = weights.user_styles_dir()
    weights.export_style(tiny_model, folder, "broken", source="t", license="MIT", training_steps=0, quality={})
    (folder / "broken.json").write_text("{ not json")
    try:
        rc, out, err = cli("weights", "list")
        assert rc == 0 and "shinkai" in out and "broken" not in out
        assert "warning: skipping a style" in err and "broken.json" in err and "Traceback" not in err
        rc, _, err = cli(clip, tmp_path / "o.mp4", "--style", "shinkai-lite", "--max-side", 32, "-q")
        assert rc == 0 and "broken.json" in err
    finally:
        for p in folder.glob("broken.*"):
            p.unlink()


def test_an_unreadable_user_styles_folder_is_a_warning(cli, monkeypatch, tmp_path, clip):
    from stream import weights

    folder = weights.user_styles_dir()
    folder.mkdir(parents=True, exist_ok=True)
    real_iterdir = Path.iterdir

    def iterdir(self):
        if self == folder:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    rc, out, err = cli("weights", "list")
    assert rc == 0 and "shinkai" in out
    assert err.count("\n") == 1 and "cannot read the styles folder (Permission denied)" in err


def test_an_import_a_start_up_signal_broke_ends_with_the_signals_line_not_its_own_error(tmp_path):
    """An extension module whose initialisation a Ctrl-C interrupts may swallow the KeyboardInterrupt and fail
    with an error of its own (NumPy's "cannot load module more than once per process"): still one line and
    128 + the signal. Here a finder for ``stream.cli`` does exactly that."""
    import subprocess
    import sys

    script = (
        "import importlib.abc, os, signal, sys\n"
        "class Broken(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name != 'stream.cli':\n"
        "            return None\n"
        "        try:\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "            for _ in range(10000): pass\n"
        "        except BaseException:\n"
        "            pass\n"
        "        raise ImportError('cannot load module more than once per process')\n"
        "sys.meta_path.insert(0, Broken())\n"
        "from stream.__main__ import run\n"
        "sys.exit(run())\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=media.ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, done.stderr
    assert done.stderr == "animestream: interrupted while starting\n"
    clean = subprocess.run([sys.executable, "-c", script.replace("os.kill(os.getpid(), signal.SIGINT)", "pass")],
                           cwd=media.ROOT, capture_output=True, text=True, timeout=60)
    assert clean.returncode == 1 and "ImportError: cannot load module" in clean.stderr  # no signal: its own error
