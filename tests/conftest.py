"""Shared fixtures: a tiny random-weight style and small synthetic clips (the suite must stay fast)."""
from __future__ import annotations

import json
import os
import signal
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import media  # noqa: E402

# One intra-op thread: the machine is small and often busy; more threads only spin and slow down.
torch.set_num_threads(1)

# A shell without job control starts background jobs with SIGINT ignored, and children inherit that:
# the Ctrl-C tests' subprocesses would then never see the signal. Give them Python's own handler back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

from media import LONG_FRAMES, VFR_PTS  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory):
    """Keep the user's own styles (~/.cache/animestream) out of the tests."""
    home = tmp_path_factory.mktemp("animestream_home")
    old = os.environ.get("ANIMESTREAM_HOME")
    os.environ["ANIMESTREAM_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("ANIMESTREAM_HOME", None)
    else:
        os.environ["ANIMESTREAM_HOME"] = old


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def tiny_model():
    torch.manual_seed(0)
    from stream.model import Generator
    return Generator(width=0.25, blocks=1).eval()


@pytest.fixture(scope="session")
def tiny_style(tmp_path_factory, tiny_model) -> Path:
    """A random-weight style with a quarter of the channels and one residual block, stored as the
    built-ins are (tiny.safetensors + tiny.json)."""
    from stream import weights
    return weights.export_style(tiny_model, tmp_path_factory.mktemp("styles"), "tiny", source="test",
                                license="MIT", training_steps=0, quality={})


@pytest.fixture(scope="session")
def tiny_torchscript(tmp_path_factory, tiny_model) -> Path:
    """The same generator as a TorchScript file (the format of earlier releases and of users' own files)."""
    path = tmp_path_factory.mktemp("torchscript") / "tiny.pt"
    torch.jit.script(tiny_model).save(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_engine(tiny_style):
    from stream.engine import Engine
    return Engine(tiny_style, max_side=64, precision="fp32", device="cpu")  # the CPU even where CUDA is


@pytest.fixture(scope="session")
def clip(media_dir) -> Path:
    """30 frames, 64x48, 24 fps H.264 with a stereo AAC track."""
    return media.write_clip(media_dir / "clip.mp4", frames=30)


@pytest.fixture(scope="session")
def vfr_clip(media_dir) -> Path:
    """Variable frame rate: time base 1/1000 and irregular pts, with AAC audio."""
    return media.write_clip(media_dir / "vfr.mp4", pts=VFR_PTS, time_base=Fraction(1, 1000))


@pytest.fixture(scope="session")
def pcm_mkv(media_dir) -> Path:
    """Matroska with pcm_s16le audio (MP4 cannot hold it: it must be transcoded there)."""
    return media.write_clip(media_dir / "pcm.mkv", frames=20, audio="pcm_s16le")


@pytest.fixture(scope="session")
def faststart_clip(media_dir) -> Path:
    """60 frames with the moov atom at the front, so a cut file still opens."""
    return media.write_clip(media_dir / "faststart.mp4", frames=60, faststart=True)


@pytest.fixture(scope="session")
def long_clip(media_dir) -> Path:
    """2000 frames of 64x48 with audio: long enough to interrupt."""
    return media.write_clip(media_dir / "long.mp4", frames=LONG_FRAMES)


@pytest.fixture
def cli(capsys):
    """Run ``stream.cli.main`` in-process: returns (exit code, stdout, stderr)."""
    from stream.cli import main

    def run(*argv: object) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err
    return run


def pytest_report_header(config) -> list[str]:
    """What this run assumes, said at its top: the CPU class the model paths run as (numbers such as INT8's
    closeness depend on it), whether a CUDA GPU is there (tests that compare with a CPU reference pin the
    CPU), and whether ../shared (teachers, real media) is there for the tests that need it."""
    from stream import cpu

    here = cpu.current()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (every test runs on the CPU)"
    shared = media.SHARED if (media.SHARED / "media").is_dir() else "absent: the tests that need it skip"
    return [f"animestream: CPU class {here.describe()}; torch kernels {torch.backends.cpu.get_cpu_capability()}",
            f"animestream: CUDA GPU {gpu}; ../shared {shared}"]


def pytest_configure(config):
    # torch.jit.* is deprecated upstream but is this project's weights format; keep the report readable.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:torch")
    config.addinivalue_line("filterwarnings", "ignore::torch.jit.TracerWarning")


class _NhwcBgrUnit(torch.nn.Module):
    """A generator that wants what some exporters give: NHWC, BGR, values in [0, 1]."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        from stream.model import Generator
        self.net = Generator(width=0.25, blocks=1).eval()

    def forward(self, x):  # N x H x W x 3 BGR in [0, 1]
        rgb = x.permute(0, 3, 1, 2).flip(1) * 2 - 1
        return ((self.net(rgb) + 1) / 2).flip(1).permute(0, 2, 3, 1)


@pytest.fixture(scope="session")
def onnx_teachers(tmp_path_factory):
    """A teachers.json folder holding one tiny ONNX teacher with a declared, non-default layout."""
    folder = tmp_path_factory.mktemp("teachers")
    model = _NhwcBgrUnit()
    torch.onnx.export(model, (torch.rand(1, 32, 48, 3),), str(folder / "tiny.onnx"), input_names=["photo"],
                      output_names=["anime"], dynamic_axes={"photo": {1: "h", 2: "w"}, "anime": {1: "h", 2: "w"}},
                      opset_version=17, dynamo=False)
    io = {"name": "photo", "layout": "NHWC", "channels": "BGR", "range": [0, 1], "size_multiple": 4}
    entry = {"name": "tiny_teacher", "file": "tiny.onnx", "sha256": media.sha256(folder / "tiny.onnx"),
             "license": {"terms": "test-only"}, "what": {"model": "a test generator", "style": "noise"},
             "input": io, "output": {**io, "name": "anime"}}
    (folder / "teachers.json").write_text(json.dumps({"format": 1, "teachers": [entry]}))
    return folder, model
