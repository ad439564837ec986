"""Engine: same-size output, the capped inference size, reused buffers."""
from __future__ import annotations

import sys
from fractions import Fraction

from pathlib import Path

import av
import numpy as np
import pytest

import media
from media import frame_image
from stream.engine import SIDE_MULTIPLE, Engine, inference_size
from stream.errors import AnimestreamError


@pytest.mark.parametrize("width,height", [(64, 48), (101, 77), (77, 101), (33, 9), (9, 9)])
def test_output_has_the_input_shape_even_for_odd_sizes(tiny_engine, width, height):
    image = frame_image(3, width, height)
    out = tiny_engine(image)
    assert out.shape == (height, width, 3)
    assert out.dtype == np.uint8
    assert not np.array_equal(out, image)  # it did something


@pytest.mark.parametrize("width,height,max_side,expected", [
    (1920, 1080, 512, (512, 288)),
    (1080, 1920, 512, (288, 512)),
    (640, 360, 256, (256, 144)),
    (101, 77, 64, (64, 48)),
    (64, 48, 512, (64, 48)),  # never upscales
    (101, 77, 0, (101, 77)),  # 0 = no cap: the frame's own size, not resampled
    (101, 77, 101, (101, 77)),  # within the cap: the same
    (6, 101, 0, (8, 100)),  # under MIN_SIDE: rounded up (and to multiples of 4)
    (3840, 2160, 0, (3840, 2160)),
])
def test_inference_size_examples(width, height, max_side, expected):
    assert inference_size(width, height, max_side) == expected


SIZES = [(1920, 1080), (1080, 1920), (640, 360), (101, 77), (1000, 500), (333, 999)]


def _check_inference_size(width: int, height: int, max_side: int) -> str | None:
    """None when the size is right, else what is wrong."""
    w, h = inference_size(width, height, max_side)
    if (w, h) == (width, height) and max(w, h) <= max_side:
        return None  # within the cap: run as it is
    if w % SIDE_MULTIPLE or h % SIDE_MULTIPLE:
        return f"{width}x{height} @ {max_side}: {w}x{h} is not a multiple of {SIDE_MULTIPLE}"
    if max(w, h) > max_side:
        return f"{width}x{height} @ max_side={max_side}: runs at {w}x{h}, over the cap"
    if max(w, h) < min(max_side, max(width, height)) - 2 * SIDE_MULTIPLE:
        return f"{width}x{height} @ {max_side}: {w}x{h} wastes the cap"
    # Aspect kept up to rounding each side to a multiple of 4 (at most one step of 4 px each).
    if abs(w / h - width / height) > (width / height) * (4 / h + 4 / w):
        return f"{width}x{height} @ {max_side}: {w}x{h} distorts the aspect ratio"
    return None


@pytest.mark.parametrize("width,height", SIZES)
@pytest.mark.parametrize("max_side", [32, 64, 100, 256, 512])
def test_inference_size_respects_the_cap_and_keeps_the_aspect(width, height, max_side):
    assert _check_inference_size(width, height, max_side) is None


def test_inference_size_respects_a_cap_that_is_not_a_multiple_of_4():
    """The docstring promises 'longest side <= max_side'; rounding to the nearest multiple of 4
    breaks it for caps like 510 (1920x1080 runs at 512x288)."""
    problems = [p for max_side in (63, 255, 510) for width, height in SIZES
                if (p := _check_inference_size(width, height, max_side))]
    assert problems == []


@pytest.mark.parametrize("width,height,max_side", [(5, 5, 0), (6, 4, 64), (2000, 100, 64), (4000, 60, 512)])
def test_tiny_or_very_thin_frames_do_not_crash_the_engine(tiny_style, width, height, max_side):
    """The generator downsamples twice and reflect-pads by 1: it needs >= 8 px on each side at
    inference, but inference_size only guarantees 4, so a 4 px side fails inside TorchScript."""
    engine = Engine(tiny_style, max_side=max_side, precision="fp32", device="cpu")
    out = engine(frame_image(0, width, height))
    assert out.shape == (height, width, 3)


def test_inference_size_no_cap_rounds_only():
    for width, height in ((1921, 1081), (640, 360), (98, 54)):
        w, h = inference_size(width, height, 0)
        assert abs(w - width) <= SIDE_MULTIPLE // 2 and abs(h - height) <= SIDE_MULTIPLE // 2


def test_engine_runs_at_the_capped_size(tiny_style):
    engine = Engine(tiny_style, max_side=32, precision="fp32", device="cpu")
    assert engine.inference_shape(101, 77) == inference_size(101, 77, 32) == (32, 24)
    engine(frame_image(0, 101, 77))
    ((key, buf),) = engine._buffers.items()
    assert key == (77, 101)
    assert buf.small.shape == (24, 32, 3)
    assert tuple(buf.out_f32.shape) == (1, 3, 24, 32)
    assert buf.full.shape == (77, 101, 3)


def test_engine_without_cap_runs_at_full_size(tiny_style):
    engine = Engine(tiny_style, max_side=0, precision="fp32", device="cpu")
    engine(frame_image(0, 96, 64))
    (buf,) = engine._buffers.values()
    assert buf.small.shape == (64, 96, 3)


def test_buffers_are_reused_across_calls(tiny_engine):
    a, b = frame_image(1, 101, 77), frame_image(2, 101, 77)
    out1 = tiny_engine(a)
    first = out1.copy()
    (buf,) = tiny_engine._buffers.values()
    ptrs = {name: getattr(buf, name).data_ptr() for name in ("out_f32", "out_u8")}
    model_input = tiny_engine.backend._input._buffer.data_ptr()  # the float backend's scaled frame
    arrays = {name: getattr(buf, name).__array_interface__["data"][0] for name in ("small", "full")}

    out2 = tiny_engine(b)
    assert out2 is out1  # the very same array object: the engine writes in place
    (buf2,) = tiny_engine._buffers.values()
    assert buf2 is buf
    assert {name: getattr(buf2, name).data_ptr() for name in ptrs} == ptrs
    assert tiny_engine.backend._input._buffer.data_ptr() == model_input
    assert {name: getattr(buf2, name).__array_interface__["data"][0] for name in arrays} == arrays
    assert not np.array_equal(first, out2)  # new content in the same memory

    out3 = tiny_engine(a)
    assert out3 is out1
    np.testing.assert_array_equal(out3, first)  # deterministic


def test_a_new_size_gets_new_buffers(tiny_engine):
    out_a = tiny_engine(frame_image(0, 64, 48))
    out_b = tiny_engine(frame_image(0, 96, 64))
    assert out_a.shape == (48, 64, 3) and out_b.shape == (64, 96, 3)
    assert list(tiny_engine._buffers) == [(64, 96)]  # one resolution kept at a time


@pytest.mark.parametrize("bad", [np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8),
                                 np.zeros((8, 8, 4), np.uint8)])
def test_engine_rejects_frames_that_are_not_hxwx3_uint8(tiny_engine, bad):
    with pytest.raises(ValueError, match="uint8"):
        tiny_engine(bad)


def test_engine_rejects_a_negative_cap(tiny_style):
    with pytest.raises(ValueError):
        Engine(tiny_style, max_side=-1, device="cpu")


def test_precision_rules(tiny_style):
    engine = Engine(tiny_style, max_side=32, device="cpu")  # no calibration: bf16 where native, else fp32
    assert engine.precision == ("bf16" if engine.cpu.has_bf16 else "fp32") and engine.choice.why
    assert Engine(tiny_style, max_side=32, device="cpu", precision="bf16").precision == "bf16"
    with pytest.raises(AnimestreamError, match="needs a CUDA GPU"):
        Engine(tiny_style, device="cpu", precision="fp16")
    with pytest.raises(ValueError):
        Engine(tiny_style, device="cpu", precision="int4")


def test_bf16_engine_is_close_to_fp32(tiny_style):
    image = frame_image(5, 64, 48)
    ref = Engine(tiny_style, max_side=64, precision="fp32", device="cpu")(image).astype(int)
    out = Engine(tiny_style, max_side=64, precision="bf16", device="cpu")(image).astype(int)
    assert np.abs(out - ref).mean() < 4.0


def test_default_style_engine_uses_the_sidecar_recommendation():
    engine = Engine(max_side=None, precision="fp32", device="cpu")
    assert engine.style == "hayao"
    assert engine.max_side == engine.meta.get("recommended_max_side", 512)
    image = frame_image(0, 40, 30)
    out = engine(image)
    assert out.shape == image.shape
    assert 0 < float(np.abs(out.astype(int) - image.astype(int)).mean())


def test_lite_styles_leave_a_core_for_decoding_and_encoding(monkeypatch):
    from stream import engine as engine_module
    from stream.weights import Style

    def style(meta: dict) -> Style:
        return Style("s", Path("s.safetensors"), meta)

    lite = {"architecture": {"width": 0.5}, "recommended_max_side": 160}
    monkeypatch.setattr(engine_module, "DEFAULT_THREADS", 4)
    assert engine_module.default_threads(style(lite)) == 3
    assert engine_module.default_threads(style({**lite, "recommended_max_side": 512})) == 4  # half width, full cap
    assert engine_module.default_threads(style({"architecture": {"width": 1.0}, "recommended_max_side": 160})) == 4
    assert engine_module.default_threads(style({"width": 0.5, "recommended_max_side": 160})) == 3  # older sidecars
    assert engine_module.default_threads(style({})) == 4
    monkeypatch.setattr(engine_module, "DEFAULT_THREADS", 1)
    assert engine_module.default_threads(style(lite)) == 1


def test_each_engine_runs_with_its_own_thread_count(tiny_style):
    import torch
    one = Engine(tiny_style, max_side=32, precision="fp32", threads=1, device="cpu")
    two = Engine(tiny_style, max_side=32, precision="fp32", threads=2, device="cpu")
    frame = frame_image(0, 40, 30)
    try:
        one(frame)
        assert torch.get_num_threads() == 1
        two(frame)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    with pytest.raises(ValueError, match="threads must be >= 0"):
        Engine(tiny_style, threads=-1, device="cpu")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_cpu_engines_keep_activation_memory_between_frames(tiny_style):
    from stream import engine as engine_module
    Engine(tiny_style, max_side=32, precision="fp32", device="cpu")
    assert engine_module._malloc_tuned
    assert engine_module.keep_activation_memory()  # idempotent


def test_parallel_group_norm_computes_what_group_norm_does():
    """The GPU's GroupNorm(1) as one var_mean reduction: the same function, in fp32 on the CPU."""
    import copy

    import torch

    from stream.model import Generator, GroupNorm1, with_parallel_group_norm

    torch.manual_seed(3)
    model = Generator(width=0.5, blocks=2).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.uniform_(-0.3, 0.3)
    fast = with_parallel_group_norm(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in fast.modules())
    assert sum(isinstance(m, GroupNorm1) for m in fast.modules()) == sum(
        isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    assert sorted(fast.state_dict()) == sorted(model.state_dict())  # the layout does not change
    x = torch.rand(2, 3, 52, 68) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(fast)(x), model(x), atol=2e-5, rtol=1e-4)


def test_packed_group_norm_computes_what_group_norm_does():
    """The CPU's few-channel GroupNorm(1), computed on the same memory seen as 32 channels: the same
    function in fp32 and within bf16 rounding in bf16, in channels-last or not, whatever the width."""
    import copy

    import torch

    from stream.model import Generator, PackedGroupNorm, with_packed_group_norm

    torch.manual_seed(4)
    model = Generator(width=0.25, blocks=2).eval()  # 8, 16, 32 and 64 channels
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.uniform_(-0.3, 0.3)
    packed = with_packed_group_norm(copy.deepcopy(model))
    packs = sorted(m.pack for m in packed.modules() if isinstance(m, PackedGroupNorm))
    assert packs == [2] * 4 + [4] * 2  # the four 16-channel norms twice, the two 8-channel ones four times
    odd = with_packed_group_norm(Generator(width=0.375, blocks=1))  # 12, 24, 48, 96 channels
    assert sorted(m.pack for m in odd.modules() if isinstance(m, PackedGroupNorm)) == [2] * 6 + [4] * 4 + [8] * 2
    assert sorted(packed.state_dict()) == sorted(model.state_dict())
    scripted = torch.jit.script(packed)
    for height, width in ((52, 68), (40, 36)):  # 36: its 9-pixel-wide layer cannot be seen as 4 pixels
        x = torch.rand(2, 3, height, width) * 2 - 1
        with torch.no_grad():
            ref = model(x)
            torch.testing.assert_close(scripted(x), ref, atol=2e-5, rtol=1e-4)
            last = x.contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(scripted(last), ref, atol=2e-5, rtol=1e-4)
            norm = packed.block_a[0][2]
            h = torch.randn(2, 8, height, width).contiguous(memory_format=torch.channels_last)
            assert norm(h).is_contiguous(memory_format=torch.channels_last)
            low = norm(h.bfloat16()).float()
            exact = model.block_a[0][2](h)
            assert (low - exact).abs().max() < 0.1 and (low - exact).abs().mean() < 0.01


def test_cpu_bf16_engines_pack_the_few_channel_norms(tiny_style):
    import torch

    bf16 = Engine(tiny_style, max_side=32, precision="bf16", device="cpu").backend.module
    fp32 = Engine(tiny_style, max_side=32, precision="fp32", device="cpu").backend.module
    names = lambda m: {sub.original_name for sub in m.modules()}  # noqa: E731
    assert "PackedGroupNorm" in names(bf16) and "PackedGroupNorm" not in names(fp32)
    assert next(bf16.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize("frames, batch", [(7, 3), (5, 8), (1, 2)])
def test_batched_file_jobs_keep_every_frame_in_order_with_its_timestamp(tmp_path, tiny_style, frames, batch):
    """The GPU path's batching and device-side resize, run on the CPU: a batch size that does not divide the
    frame count, frames in order, timestamps and sound kept, results those of frame-by-frame runs."""
    from stream.filejob import convert_video

    src = media.write_clip(tmp_path / "in.mp4", frames=frames, size=(96, 72), pts=media.VFR_PTS[:frames],
                           time_base=Fraction(1, 1000))
    single = Engine(tiny_style, max_side=48, precision="fp32", device="cpu")
    single.resizes_on_device = True  # the seam: the GPU path, on the CPU
    batched = Engine(tiny_style, max_side=48, precision="fp32", device="cpu", batch=batch)
    batched.resizes_on_device = True
    assert batched.batch_size == batch and batched.decode_shape(96, 72) == (96, 72)
    convert_video(src, tmp_path / "one.mp4", single, progress=False, crf=0)
    stats = convert_video(src, tmp_path / "many.mp4", batched, progress=False, crf=0)
    assert stats.extra["batch"] == batch and stats.frames_out == frames
    one, many = media.probe(tmp_path / "one.mp4"), media.probe(tmp_path / "many.mp4")
    assert many.times == one.times == media.probe(src).times
    assert many.audio_duration == pytest.approx(one.audio_duration)
    with av.open(str(tmp_path / "one.mp4")) as a, av.open(str(tmp_path / "many.mp4")) as b:
        ones = [f.to_ndarray(format="rgb24").astype(int) for f in a.decode(video=0)]
        manys = [f.to_ndarray(format="rgb24").astype(int) for f in b.decode(video=0)]
    for i, got in enumerate(manys):  # each frame is its own (batched convolutions round a little differently)
        errors = [np.abs(got - want).mean() for want in ones]
        assert np.abs(got - ones[i]).max() <= 3 and int(np.argmin(errors)) == i


def test_device_resize_arithmetic_matches_a_reference_resize(tiny_style):
    """Down to the inference size with antialiasing, model, back up bilinearly: as torch does it on the CPU."""
    import torch
    import torch.nn.functional as F

    engine = Engine(tiny_style, max_side=40, precision="fp32", device="cpu")
    engine.resizes_on_device = True
    frame = media.frame_image(4, 100, 60)
    got = engine(frame)
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(24, 40), mode="bilinear", antialias=True, align_corners=False) / 127.5 - 1
    with torch.no_grad():
        y = F.interpolate(engine.module(x).float(), size=(60, 100), mode="bilinear", align_corners=False)
    want = ((y + 1) * 127.5).clamp(0, 255).round().byte()[0].permute(1, 2, 0).numpy()
    assert got.shape == frame.shape and np.abs(got.astype(int) - want).max() <= 1
