"""ONNX generators as styles: file jobs, imports with declared layouts, live, the service, and the real teachers."""
from __future__ import annotations

import json
import sys
from fractions import Fraction

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from media import SHARED, write_image
from stream import weights
from stream.engine import Engine
from stream.errors import AnimestreamError, WeightsError
from stream.live import StyleSwitcher
from stream.model import Generator
from stream.pipeline import Pipeline
from stream.serve import StyleService

TEACHERS = SHARED / "teachers"
needs_teachers = pytest.mark.skipif(not (TEACHERS / "teachers.json").exists(), reason=f"needs {TEACHERS}")


class _V3Like(torch.nn.Module):
    """The AnimeGANv3 release layout: N x H x W x 3 RGB in [-1, 1], sides a multiple of 8."""

    def __init__(self, net: Generator):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class _NchwBgr01(torch.nn.Module):
    """Another layout: N x 3 x H x W, BGR, values in [0, 1]."""

    def __init__(self, net: Generator):
        super().__init__()
        self.net = net

    def forward(self, x):
        return ((self.net(x.flip(1) * 2 - 1) + 1) / 2).flip(1)


@pytest.fixture(scope="module")
def net() -> Generator:
    torch.manual_seed(7)
    return Generator(width=0.25, blocks=1).eval()


def _export(module: torch.nn.Module, example: torch.Tensor, path, dims: tuple[int, int]):
    axes = {d: n for d, n in zip(dims, ("h", "w"))}
    torch.onnx.export(module, (example,), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": axes, "y": axes}, opset_version=17, dynamo=False)
    return path


@pytest.fixture(scope="module")
def v3_onnx(tmp_path_factory, net):
    return _export(_V3Like(net), torch.rand(1, 32, 48, 3) * 2 - 1, tmp_path_factory.mktemp("onnx") / "v3like.onnx",
                   (1, 2))


@pytest.fixture(scope="module")
def bgr_onnx(tmp_path_factory, net):
    return _export(_NchwBgr01(net), torch.rand(1, 3, 32, 48), tmp_path_factory.mktemp("onnx") / "bgr.onnx", (2, 3))


def _reference(net: Generator, frame: np.ndarray, multiple: int) -> np.ndarray:
    """What the ONNX style must give for ``frame``: reflect-padded to the multiple, cropped back."""
    h, w = frame.shape[:2]
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        y = net(F.pad(x, (0, -w % multiple, 0, -h % multiple), mode="reflect"))[:, :, :h, :w]
    return ((y[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()


def _frame(h: int = 44, w: int = 60) -> np.ndarray:
    rng = np.random.default_rng(3)
    return cv2.resize(rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8), (w, h),
                      interpolation=cv2.INTER_CUBIC)


def test_an_official_v3_layout_runs_as_downloaded(v3_onnx, net):
    engine = Engine(v3_onnx, max_side=0, device="cpu")
    assert (engine.precision, engine.spec.format, engine.style) == ("fp32", "onnx", "v3like")
    frame = _frame()  # 44 x 60: not multiples of 8, so the engine's padding rule is exercised
    got = engine(frame)
    assert got.shape == frame.shape
    assert np.abs(got.astype(int) - _reference(net, frame, 8)).max() <= 1
    capped = Engine(v3_onnx, max_side=32, device="cpu")
    assert capped(frame).shape == frame.shape and capped.inference_shape(60, 44) == (32, 24)


def test_onnx_styles_run_in_fp32_only(v3_onnx):
    with pytest.raises(AnimestreamError, match="ONNX style runs in fp32"):
        Engine(v3_onnx, precision="bf16", device="cpu")


def test_import_with_a_declared_layout_and_use_it_by_name(bgr_onnx, net, tmp_path, cli):
    io = tmp_path / "io.json"
    io.write_text(json.dumps({"input": {"layout": "NCHW", "channels": "BGR", "range": [0, 1], "size_multiple": 4}}))
    rc, _, err = cli("weights", "import", bgr_onnx, "--name", "bgr-style", "--io", io, "--license", "CC0")
    assert rc == 0, err
    style = weights.find_style("bgr-style")
    try:
        assert style.format == "onnx" and style.origin == "imported" and style.meta["license"] == "CC0"
        assert style.meta["onnx"]["channels"] == "BGR" and style.meta["onnx"]["size_multiple"] == 4
        frame = _frame()
        got = Engine("bgr-style", max_side=0, device="cpu")(frame)
        assert np.abs(got.astype(int) - _reference(net, frame, 4)).max() <= 1
        rc, out, _ = cli("weights", "list")
        assert "bgr-style" in out
    finally:
        for suffix in (".onnx", ".json"):
            (weights.user_styles_dir() / f"bgr-style{suffix}").unlink(missing_ok=True)


def test_a_file_job_with_an_onnx_style(v3_onnx, tmp_path, clip, cli):
    out = tmp_path / "out.mp4"
    rc, _, err = cli(clip, out, "--style", v3_onnx, "--max-side", 32, "-q")
    assert rc == 0, err
    img = write_image(tmp_path / "in.png", 50, 38)
    rc, _, err = cli(img, tmp_path / "out.png", "--style", v3_onnx, "-q")
    assert rc == 0 and cv2.imread(str(tmp_path / "out.png")).shape == (38, 50, 3)


def test_live_and_the_service_take_onnx_styles(v3_onnx, tiny_style, net):
    first = Engine(tiny_style, max_side=0, precision="fp32", device="cpu")
    switcher = StyleSwitcher([tiny_style, v3_onnx], first, first.options)
    frame = _frame(40, 56)
    frames = [(i, frame) for i in range(3)]

    class Collect:
        images: list = []

        def write(self, item, image):
            self.images.append(image.copy())

        def write_audio(self, item):
            pass

    from stream.sources import Frame
    switcher.select(1)
    Pipeline([Frame(i, img, i, Fraction(1, 30), 0.0) for i, img in frames], switcher, Collect()).run()
    assert switcher.style == "v3like" and len(Collect.images) == 3
    assert np.abs(Collect.images[-1].astype(int) - _reference(net, frame, 8)).max() <= 1

    service = StyleService(lambda style, max_side: Engine(v3_onnx, max_side=max_side or 0, device="cpu"),
                           default_style="v3like")
    body = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))[1].tobytes()
    png, _, _ = service.stylize(body, "v3like", None, "png")
    got = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.abs(got.astype(int) - _reference(net, frame, 8)).max() <= 1


def test_a_broken_onnx_file_is_a_one_line_weights_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model" * 10)
    with pytest.raises(WeightsError, match="bad.onnx: not a loadable ONNX model") as e:
        Engine(bad, device="cpu")
    assert "\n" not in str(e.value)


@needs_teachers
@pytest.mark.parametrize("name", ["animeganv3_shinkai_37", "whitebox_cartoon"])
def test_the_real_teachers_run_as_styles_like_their_own_runner(name, tmp_path, cli):
    """An official AnimeGANv3 release as downloaded, and White-box (NHWC BGR, multiple of 4) as declared."""
    sys.path.insert(0, str(TEACHERS))
    try:
        from run_teacher import Teacher, manifest
    finally:
        sys.path.remove(str(TEACHERS))
    entry = manifest(str(TEACHERS))[name]
    photo = cv2.cvtColor(cv2.imread(str(SHARED / "media" / "photos" / "bl_1.jpg")), cv2.COLOR_BGR2RGB)
    photo = cv2.resize(photo, (250, 190), interpolation=cv2.INTER_AREA)
    want = Teacher(name, root=str(TEACHERS))(photo)
    style = f"t-{name.replace('_', '-')}"
    args = ["weights", "import", TEACHERS / entry["file"], "--name", style]
    if name == "whitebox_cartoon":
        io = tmp_path / "io.json"
        io.write_text(json.dumps(entry))  # a teachers.json entry is a valid declaration
        args += ["--io", io]
    rc, _, err = cli(*args)
    assert rc == 0, err
    try:
        got = Engine(style, max_side=0, device="cpu")(photo)
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    finally:
        for suffix in (".onnx", ".json"):
            (weights.user_styles_dir() / f"{style}{suffix}").unlink(missing_ok=True)


def test_onnx_threads_leave_the_cores_alone_between_runs(v3_onnx):
    """onnxruntime's pool spins by default after each run, taking the cores the decoder, the encoder or
    the next model need (a torch model after each run: 48 -> 75 ms here). Ours must go idle."""
    import time

    from stream.onnxgen import OnnxGenerator, OnnxIO

    gen = OnnxGenerator(v3_onnx, OnnxIO(), threads=2)
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    gen(x)
    burnt = []
    for _ in range(3):
        gen(x)
        start = time.process_time()  # every thread of this process
        time.sleep(0.2)
        burnt.append(time.process_time() - start)
    assert min(burnt) < 0.004, burnt
