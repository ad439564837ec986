"""INT8 path: exact byte padding, fidelity to the float model, calibration files, and how it is chosen."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stream import calibration, policy, quant, weights
from stream.cpu import CpuClass
from stream.engine import Engine
from stream.errors import AnimestreamError, WeightsError
from stream.fold import folded
from stream.model import ChannelAffine, ConvNormLReLU, Generator, InvertedResBlock

ROOT = Path(__file__).resolve().parent.parent
ASTRONAUT = ROOT / "samples" / "astronaut.jpg"
SHIPPED_RANGES = sorted(p.stem for p in (ROOT / "weights").glob("*.ranges"))  # built-in styles calibrated for INT8


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """dB between two outputs in [-1, 1]."""
    return float(10 * torch.log10(4 / ((a.float() - b.float()) ** 2).mean()))


@pytest.mark.parametrize("pad", [(1, 1, 1, 1), (0, 1, 0, 1), (3, 3, 3, 3), (2, 0, 1, 3)])
def test_byte_reflection_pad_equals_torch_reflection_pad(pad):
    x = torch.randn(1, 5, 9, 11).contiguous(memory_format=torch.channels_last)
    q = torch.quantize_per_tensor(x, 0.02, 120, torch.quint8)
    got = quant._reflect_pad(q, pad)
    want = F.pad(q.dequantize(), pad, mode="reflect")
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert (got.q_scale(), got.q_zero_point()) == (0.02, 120)
    assert torch.equal(got.dequantize(), want)


@pytest.mark.parametrize("channels, width", [(8, 64), (12, 48), (16, 40), (24, 36), (32, 20), (8, 30)])
def test_a_few_channel_quantized_norm_packed_gives_the_same_bytes(channels, width):
    """quantized.batch_norm2d on the same bytes seen as a multiple of 32 channels (fast): byte for byte
    what it gives on the channels as they are; (8, 30): 30 pixels cannot be seen 4 at a time, unpacked."""
    torch.manual_seed(channels)
    y = torch.quantize_per_tensor(torch.randn(2, channels, 6, width).contiguous(memory_format=torch.channels_last),
                                  0.05, 120, torch.quint8)
    w, b = torch.rand(channels) + 0.5, torch.randn(channels)
    mean, var = torch.randn(channels) * 0.1, torch.rand(channels) + 0.5
    got = quant._batch_norm(y, w, b, mean, var, 0.04, 128)
    want = torch.ops.quantized.batch_norm2d(y, w, b, mean, var, 0.0, 0.04, 128)
    assert got.is_contiguous(memory_format=torch.channels_last) and got.q_scale() == 0.04
    assert torch.equal(got.int_repr(), want.int_repr())
    assert torch.equal(quant._batch_norm(y.contiguous(), w, b, mean, var, 0.04, 128).int_repr(), want.int_repr())


@pytest.mark.parametrize("shape", [(1, 8, 2, 2), (1, 5, 9, 12), (1, 16, 30, 40)])
def test_doubling_a_quantized_tensor_is_within_half_a_level_of_exact(shape):
    """The generator's 2x asymmetric upsampling on bytes (stream.quant._double): every output within half a
    level of the float resize of the same values, as the general quantized bilinear kernel it replaces."""
    from stream.model import resize_asymmetric

    torch.manual_seed(1)
    x = torch.quantize_per_tensor(torch.randn(shape).contiguous(memory_format=torch.channels_last), 0.05, 131,
                                  torch.quint8)
    size = [2 * shape[2], 2 * shape[3]]
    got = quant._resize(x, size, asymmetric=True)
    exact = resize_asymmetric(x.dequantize(), size)
    assert got.shape == exact.shape and got.is_contiguous(memory_format=torch.channels_last)
    assert (got.q_scale(), got.q_zero_point()) == (0.05, 131)
    assert float((got.dequantize() - exact).abs().max()) <= 0.05 / 2 + 1e-6
    assert torch.equal(got.dequantize()[:, :, ::2, ::2], x.dequantize())  # source pixels kept as they are


def astronaut(side: int) -> torch.Tensor:
    rgb = cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGB)
    return torch.from_numpy(cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA)).permute(2, 0, 1)[None]


@pytest.mark.parametrize("name", SHIPPED_RANGES)
def test_shipped_int8_styles_stay_close_to_the_float_model(name):
    """The shipped calibration (60 photos) on a photo it never saw: INT8 at least 35 dB PSNR from the float model."""
    style = weights.resolve(name)
    fp32 = weights.eager_generator(style)
    int8 = quant.Int8Generator(fp32, weights.load_ranges(style, fp32))
    frame = astronaut(192)
    with torch.inference_mode():
        reference = fp32(frame.float() / 127.5 - 1)
        out = int8.forward_uint8(frame.contiguous(memory_format=torch.channels_last))
        scrambled = fp32(frame.flip(-1).float() / 127.5 - 1)  # a different picture: how far "wrong" is
    assert out.shape == reference.shape and out.dtype == torch.float32
    assert psnr(out, reference) >= 35.0
    assert psnr(scrambled, reference) < 20.0
    # The last convolution runs in float: an 8-bit output before tanh could take at most 256 values,
    # steps of up to 3 output levels that shimmer from frame to frame.
    assert out[0, 0].unique().numel() > 1000


def test_int8_widens_ranges_that_a_picture_overflows(monkeypatch):
    """A picture unlike the calibration photos (here: calibrated at 32 px, run at 96, so every layer sees
    finer detail) overflows calibrated ranges; the INT8 path widens them for that frame (it scored 37 dB
    from float where the fixed ranges scored 31; a flat grey sky of the held-back photos went from 24
    to 39 dB)."""
    torch.manual_seed(0)
    model = Generator(width=0.25, blocks=2).eval()
    ranges = calibration.calibrate(model, [astronaut(32).float() / 127.5 - 1])
    frame = astronaut(96).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        reference = model(frame.float() / 127.5 - 1)
        widened = quant.Int8Generator(model, ranges).forward_uint8(frame)
        monkeypatch.setattr(quant, "MAX_WIDENINGS", 0)
        monkeypatch.setattr(quant, "SATURATED_FRACTION", 2.0)  # never widen
        fixed = quant.Int8Generator(model, ranges).forward_uint8(frame)
    assert psnr(widened, reference) >= 35.0
    assert psnr(fixed, reference) < psnr(widened, reference) - 3.0


def test_a_norm_free_generator_runs_in_int8_close_to_its_float_model():
    """``norm="affine"``: the same quantized batch norm with the statistics fixed at 0 and 1. Calibrated on
    one picture, run on others (a mirror image, and one darker and flatter, which a fixed norm passes on
    to every layer's ranges)."""
    torch.manual_seed(0)
    layer = Generator(width=0.25, blocks=2, skip=True, guided_radius=1, guided_eps=0.01).eval()
    with torch.no_grad():
        layer.out_layer[0].weight.normal_(0.0, 0.2)
    model = Generator(width=0.25, blocks=2, skip=True, guided_radius=1, guided_eps=0.01, norm="affine").eval()
    model.load_state_dict(folded(layer, [astronaut(96).float() / 127.5 - 1]))
    assert quant.int8_refusal(model) is None
    ranges = calibration.calibrate(model, [astronaut(96).float() / 127.5 - 1])
    assert any(isinstance(m, ChannelAffine) for m in ranges)
    int8 = quant.Int8Generator(model, ranges)
    for frame in (astronaut(96).flip(-1), (astronaut(128).float() * 0.5).to(torch.uint8)):
        frame = frame.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            reference = model(frame.float() / 127.5 - 1)
            out = int8.forward_uint8(frame)
        assert psnr(out, reference) >= 35.0  # 42.6 and 44.3 dB when written


def test_a_widened_range_carries_to_the_next_frame_and_back(monkeypatch):
    """A video's next frame starts from the ranges its previous frame ended with (no second convolution
    when the picture still needs them) and goes back to the calibrated ones once a frame fits them."""
    torch.manual_seed(0)
    model = Generator(width=0.25, blocks=2).eval()
    ranges = calibration.calibrate(model, [astronaut(32).float() / 127.5 - 1])
    big = astronaut(96).contiguous(memory_format=torch.channels_last)  # overflows: see the test above
    small = astronaut(32).contiguous(memory_format=torch.channels_last)  # the calibration picture
    calls: list[tuple[quant._QConv, float]] = []
    real_conv = quant._QConv.__call__
    monkeypatch.setattr(quant._QConv, "__call__",
                        lambda conv, x, scale: calls.append((conv, scale)) or real_conv(conv, x, scale))

    def run(int8: quant.Int8Generator, frame: torch.Tensor) -> tuple[torch.Tensor, list]:
        calls.clear()
        return int8.forward_uint8(frame), list(calls)

    with torch.inference_mode():
        fresh = quant.Int8Generator(model, ranges)
        run(fresh, small)
        fresh_small, fresh_scales = run(fresh, small)  # as the second frame of a video of that picture
        int8 = quant.Int8Generator(model, ranges)
        first, widening = run(int8, big)
        again, steady = run(int8, big)
        run(int8, small)  # starts from the wide ranges, and narrows them to what this picture needs
        back, back_scales = run(int8, small)
    convs = len(fresh_scales)
    assert len(widening) > len(steady) == convs  # some ran twice at first; none the next time
    assert torch.equal(first, again)
    assert sum(scale > conv.scale for conv, scale in steady) > sum(scale > conv.scale for conv, scale in back_scales)
    assert [s for _, s in back_scales] == [s for _, s in fresh_scales] and torch.equal(back, fresh_small)
    with torch.inference_mode():
        int8.forward_uint8(big)
        int8.reset()  # an unrelated picture follows: it starts from the calibrated ranges, as the first frame
        assert torch.equal(int8.forward_uint8(small), quant.Int8Generator(model, ranges).forward_uint8(small))


def test_an_image_job_does_not_depend_on_what_the_engine_saw_before(tmp_path):
    """convert_image resets the engine: with every INT8 layer left at a wide range by earlier frames, the
    picture comes out byte for byte as from a fresh engine (it does not without the reset)."""
    from stream.filejob import convert_image

    src = tmp_path / "in.png"
    cv2.imwrite(str(src), cv2.imread(str(ASTRONAUT))[:96, :128])
    fresh = Engine("hayao", max_side=128, precision="int8")
    convert_image(src, tmp_path / "fresh.png", fresh)
    used = Engine("hayao", max_side=128, precision="int8")
    norms = used.backend._int8.norms()

    def widen() -> None:
        for norm in norms:
            norm._scale = norm.conv.scale * 8

    widen()
    convert_image(src, tmp_path / "after.png", used)
    widen()
    with torch.inference_mode():
        unreset = used(cv2.cvtColor(cv2.imread(str(src)), cv2.COLOR_BGR2RGB)).copy()
    assert np.array_equal(cv2.imread(str(tmp_path / "after.png")), cv2.imread(str(tmp_path / "fresh.png")))
    assert not np.array_equal(cv2.cvtColor(unreset, cv2.COLOR_RGB2BGR), cv2.imread(str(tmp_path / "fresh.png")))


def test_every_shipped_calibration_matches_its_style():
    """A style retrained without calibrating again would silently run with stale ranges: refuse in CI."""
    calibrated = [weights.resolve(s) for s in weights.list_styles() if s.calibrated]
    assert {s.name for s in calibrated} >= {"shinkai"} and len(SHIPPED_RANGES) >= 1
    for style in calibrated:
        model = weights.eager_generator(style)
        ranges = weights.load_ranges(style, model)
        watched = [m for m in model.modules()
                   if isinstance(m, (torch.nn.Conv2d, torch.nn.GroupNorm, ChannelAffine, ConvNormLReLU,
                                     InvertedResBlock))]
        assert set(ranges) == set(watched)


@pytest.mark.parametrize("name", SHIPPED_RANGES)
def test_shipped_int8_styles_record_a_score_within_their_bar(name):
    """A calibration ships only once bench/teachers.py --record has scored its INT8 path against the teacher
    on the held-back photos within 0.3 dB of the float model's PSNR (what lets --precision auto pick it)."""
    style = weights.resolve(name)
    score = weights.int8_psnr(style)
    assert score is not None, f"{name}: run bench/teachers.py --styles {name} --record"
    assert score >= style.meta["quality"]["psnr_vs_teacher"] - policy.MAX_LOSS_DB


def test_calibration_round_trip_and_refusals(tmp_path, tiny_model):
    images = [astronaut(32).float() / 127.5 - 1, astronaut(40).float() / 127.5 - 1]
    ranges = calibration.calibrate(tiny_model, images)
    convs = [m for m in tiny_model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m in ranges for m in convs)
    lo, hi = ranges[convs[0]]
    assert lo.shape == (convs[0].out_channels,) and bool((lo <= hi).all())
    style = weights.Style("tiny", tmp_path / "tiny.safetensors", {}, "abc")
    path = weights.save_ranges(style, tiny_model, ranges, images=2)
    assert path == tmp_path / "tiny.ranges" and not list(tmp_path.glob("*.part"))
    back = weights.load_ranges(style, tiny_model)
    assert all(torch.equal(back[m][0], ranges[m][0]) and torch.equal(back[m][1], ranges[m][1]) for m in ranges)
    with pytest.raises(WeightsError, match="another version of this style"):
        weights.load_ranges(weights.Style("tiny", style.path, {}, "def"), tiny_model)
    with pytest.raises(WeightsError, match="does not fit this style's architecture"):
        weights.load_ranges(style, Generator(width=0.25, blocks=2))
    path.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="unreadable INT8 calibration"):
        weights.load_ranges(style, tiny_model)


def test_int8_quality_is_recorded_in_the_calibration_and_only_counts_for_its_own_weights(tmp_path, tiny_model):
    style = weights.Style("tiny", tmp_path / "tiny.safetensors", {}, "abc")
    assert weights.int8_psnr(style) is None and weights.ranges_metadata(style) == {}  # no calibration at all
    ranges = calibration.calibrate(tiny_model, [astronaut(32).float() / 127.5 - 1])
    weights.save_ranges(style, tiny_model, ranges, images=1)
    assert weights.int8_psnr(style) is None  # calibrated, not yet measured against a teacher
    weights.record_int8_quality(style, 29.876, 0.91234)
    assert weights.int8_psnr(style) == pytest.approx(29.88)
    meta = weights.ranges_metadata(style)
    assert (meta["psnr_vs_teacher"], meta["ssim_vs_teacher"], meta["images"]) == ("29.88", "0.9123", "1")
    assert not list(tmp_path.glob(".*.part"))
    back = weights.load_ranges(style, tiny_model)  # recording kept the ranges themselves
    assert all(torch.equal(back[m][0], ranges[m][0]) and torch.equal(back[m][1], ranges[m][1]) for m in ranges)
    retrained = weights.Style("tiny", style.path, {}, "def")  # the same file name, other weights
    assert weights.int8_psnr(retrained) is None
    with pytest.raises(WeightsError, match="another version of this style"):
        weights.load_ranges(retrained, tiny_model)


def test_precision_choice():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    calibrated = weights.resolve("shinkai")
    uncalibrated = weights.Style("tiny", ROOT / "missing" / "tiny.safetensors", {}, "abc")
    for cls in ("avx2", "avx512-vnni"):
        here = CpuClass(name=cls, hardware=cls)
        assert policy.choose(calibrated, cpu, "auto", here).precision == "int8"  # recorded within 0.3 dB
        assert policy.choose(uncalibrated, cpu, "auto", here).precision in ("bf16", "fp32")
        assert policy.choose(calibrated, cpu, "int8", here).precision == "int8"
        with pytest.raises(AnimestreamError, match="no INT8 calibration; make one with 'animestream weights calibrate"):
            policy.choose(uncalibrated, cpu, "int8", here)
        with pytest.raises(AnimestreamError, match="int8 runs on the CPU"):
            policy.choose(calibrated, cuda, "int8", here)
    assert policy.choose(calibrated, cuda, "auto", CpuClass(name="avx2", hardware="avx2")).precision == "fp16"


def test_cli_calibrates_a_style_file_then_the_engine_runs_it_in_int8(tmp_path, tiny_style, cli):
    style = tmp_path / "tiny.safetensors"
    shutil.copy(tiny_style, style)
    shutil.copy(tiny_style.with_suffix(".json"), style.with_suffix(".json"))
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, side in enumerate((48, 64, 80)):
        cv2.imwrite(str(photos / f"p{i}.png"), cv2.resize(cv2.imread(str(ASTRONAUT)), (side, side + 8)))
    (photos / "notes.txt").write_text("not an image: skipped")
    with pytest.raises(AnimestreamError, match="no INT8 calibration"):
        Engine(style, max_side=64, precision="int8", device="cpu")
    rc, _, err = cli("weights", "calibrate", style, "--photos", photos, "--max-side", 64)
    assert rc == 0, err
    assert "calibrated on 3 photos" in err and (tmp_path / "tiny.ranges").exists()
    int8 = Engine(style, max_side=64, precision="int8", device="cpu")
    fp32 = Engine(style, max_side=64, precision="fp32", device="cpu")
    frame = cv2.cvtColor(cv2.resize(cv2.imread(str(ASTRONAUT)), (64, 64)), cv2.COLOR_BGR2RGB)
    a, b = int8(frame).astype(float), fp32(frame).astype(float)
    assert a.shape == (64, 64, 3)
    assert 10 * np.log10(255 ** 2 / ((a - b) ** 2).mean()) >= 25.0


def test_cli_calibrate_refuses_a_missing_or_empty_photo_folder(tmp_path, tiny_style, cli):
    with pytest.raises(SystemExit) as e:
        cli("weights", "calibrate", tiny_style, "--photos", tmp_path / "missing")
    assert e.value.code == 2
    rc, _, err = cli("weights", "calibrate", tiny_style, "--photos", tmp_path)
    assert rc == 1 and "no images" in err and "Traceback" not in err
    (tmp_path / "p.png").write_bytes(cv2.imencode(".png", cv2.imread(str(ASTRONAUT)))[1].tobytes())
    rc, _, err = cli("weights", "calibrate", tiny_style, "--photos", tmp_path, "--float", "block_c.7")
    assert rc == 1 and "no layer block_c.7 to run in float (one of block_a.0, " in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not tiny_style.with_suffix(".ranges").exists()


def test_saving_a_style_again_drops_its_stale_calibration(tmp_path, tiny_model):
    style = weights.save_style(tiny_model, tmp_path, "mine", {"name": "mine"})
    weights.save_ranges(style, tiny_model, calibration.calibrate(tiny_model, [astronaut(32).float() / 127.5 - 1]),
                        images=1)
    assert style.ranges_path.exists() and weights.resolve(style.path).calibrated
    weights.save_style(tiny_model, tmp_path, "mine", {"name": "mine"})
    assert not style.ranges_path.exists()


def test_layers_marked_float_run_in_float_between_int8_ones():
    """``float_layers``: every layer in float is the float model itself (the plumbing of gains, the frame's
    half-level offset, resizes and the head is exact); one layer in float anywhere (the first, a residual
    block, the last) still runs within INT8's distance of the float model, and differs from all-INT8."""
    torch.manual_seed(0)
    model = Generator(width=0.25, blocks=2).eval()
    ranges = calibration.calibrate(model, [astronaut(64).float() / 127.5 - 1])
    layers = quant.int8_layers(model)
    frame = astronaut(64).flip(-1).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        reference = model(frame.float() / 127.5 - 1)
        every = quant.Int8Generator(model, ranges, layers.values()).forward_uint8(frame)
        plain = quant.Int8Generator(model, ranges).forward_uint8(frame)
        assert float((every - reference).abs().max()) < 1e-4
        for name in ("block_a.0", "block_c.1", "block_c.2", "block_e.2", "block_d.0"):
            out = quant.Int8Generator(model, ranges, [layers[name]]).forward_uint8(frame)
            assert psnr(out, reference) >= 35.0, name
            assert not torch.equal(out, plain), name
    with pytest.raises(ValueError, match="layers of the model"):
        quant.Int8Generator(model, ranges, [model.out_layer[0]])


def test_float_layers_are_kept_in_the_calibration_and_run_by_the_int8_backend(tmp_path, tiny_style):
    """``weights calibrate --float LAYER``: the names go into the calibration's metadata (recording the INT8
    score keeps them) and the INT8 backend runs those layers in float; a name the style lacks is a
    one-line error before any photo is read."""
    from stream.backends import BackendRequest, Int8Backend

    for f in tiny_style.parent.glob("tiny.*"):
        shutil.copy(f, tmp_path)
    style = weights.resolve(tmp_path / "tiny.safetensors")
    model = weights.eager_generator(style)
    ranges = calibration.calibrate(model, [astronaut(32).float() / 127.5 - 1])
    weights.save_ranges(style, model, ranges, images=1)
    assert weights.load_float_layers(style, model) == []
    frame = astronaut(48).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        plain = Int8Backend(BackendRequest(style, "int8", torch.device("cpu")))(frame)
        weights.save_ranges(style, model, ranges, images=1, float_layers=["block_c.1", "block_e.0"])
        assert weights.ranges_metadata(style)[weights.FLOAT_LAYERS_KEY] == "block_c.1,block_e.0"
        weights.record_int8_quality(style, 30.0, 0.9)
        assert weights.load_float_layers(style, model) == [model.block_c[1], model.block_e[0]]
        mixed = Int8Backend(BackendRequest(style, "int8", torch.device("cpu")))(frame)
        want = quant.Int8Generator(model, ranges, [model.block_c[1], model.block_e[0]]).forward_uint8(frame)
    assert torch.equal(mixed, want) and not torch.equal(mixed, plain)
    with pytest.raises(WeightsError, match=r"no layer block_c\.9 to run in float \(one of block_a\.0, "):
        weights.save_ranges(style, model, ranges, images=1, float_layers=["block_c.9"])
    with pytest.raises(WeightsError, match="no layer block_z.0 to run in float"):
        calibration.calibrate_style(style, tmp_path / "no such folder", float_layers=["block_z.0"])
