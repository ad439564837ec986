"""CPU classes, the policy table that maps them to a path, the backend registry and ``animestream doctor``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from media import frame_image
from stream import backends, calibration, cpu, policy, weights
from stream.cpu import CpuClass, classify
from stream.engine import Engine
from stream.errors import AnimestreamError

ROOT = Path(__file__).resolve().parent.parent
CPU_DEVICE = torch.device("cpu")
# /proc/cpuinfo flag lines of real CPUs (trimmed to what matters), one per class.
ZEN2 = "fpu sse4_2 avx f16c fma avx2 bmi2"
ALDER_LAKE = ZEN2 + " avx_vnni"
SKYLAKE_SP = ZEN2 + " avx512f avx512dq avx512cd avx512bw avx512vl"
CASCADE_LAKE = SKYLAKE_SP + " avx512_vnni"
ZEN4 = CASCADE_LAKE + " avx512_bf16 avx512vbmi"  # no AVX-VNNI (the VEX form)
SAPPHIRE_RAPIDS = ZEN4 + " avx_vnni amx_bf16 amx_tile amx_int8"


def x86(flags: str, **env: str) -> CpuClass:
    return classify(f"model name\t: test cpu\nflags\t\t: {flags}\n", "x86_64", env)


@pytest.mark.parametrize("flags, name", [
    ("fpu sse4_2 avx", "baseline"), (ZEN2, "avx2"), (ALDER_LAKE, "avx2-vnni"), (SKYLAKE_SP, "avx512"),
    (CASCADE_LAKE, "avx512-vnni"), (ZEN4, "avx512-bf16"), (SAPPHIRE_RAPIDS, "amx")])
def test_each_x86_cpu_gets_its_class(flags, name):
    c = x86(flags)
    assert (c.name, c.hardware, c.limits, c.emulated, c.model) == (name, name, (), False, "test cpu")


def test_arm_cpus_by_their_features():
    assert classify("Features\t: fp asimd aes crc32 atomics\n", "aarch64", {}).name == "arm64"
    graviton3 = classify("Features\t: fp asimd sve i8mm bf16\n", "aarch64", {"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert (graviton3.name, graviton3.has_bf16, graviton3.has_vnni) == ("arm64-bf16", True, False)


def test_pytorch_limits_lower_the_class_as_they_lower_its_kernels():
    both = x86(SAPPHIRE_RAPIDS, ONEDNN_MAX_CPU_ISA="avx2", ATEN_CPU_CAPABILITY="AVX2")
    assert (both.name, both.hardware, both.emulated) == ("avx2", "amx", True)
    assert both.limits == ("ONEDNN_MAX_CPU_ISA=AVX2", "ATEN_CPU_CAPABILITY=avx2")
    assert "limited" in both.describe() and not both.has_vnni and not both.has_bf16
    assert x86(SAPPHIRE_RAPIDS, ATEN_CPU_CAPABILITY="avx2").name == "avx2-vnni"  # VNNI is oneDNN's, not ATen's
    assert x86(SAPPHIRE_RAPIDS, ONEDNN_MAX_CPU_ISA="AVX512_CORE_VNNI").name == "avx512-vnni"
    assert x86(ZEN4, ONEDNN_MAX_CPU_ISA="AVX2_VNNI").name == "avx2"  # Zen 4 has no AVX-VNNI to fall back on
    assert x86(ZEN2, ONEDNN_MAX_CPU_ISA="AVX512_CORE").name == "avx2"  # a limit never raises a class
    unlimited = x86(ZEN2, ONEDNN_MAX_CPU_ISA="ALL")
    assert not unlimited.emulated and "do not lower" in unlimited.describe()


def test_our_override_sets_the_class_and_a_wrong_one_is_one_line():
    forced = x86(SAPPHIRE_RAPIDS, ANIMESTREAM_CPU_CLASS="AVX2")
    assert (forced.name, forced.limits) == ("avx2", ("ANIMESTREAM_CPU_CLASS=avx2",))
    with pytest.raises(AnimestreamError, match="not a CPU class; one of baseline, avx2"):
        x86(ZEN2, ANIMESTREAM_CPU_CLASS="pentium")


def test_this_process_honours_the_variables_it_was_started_with():
    code = "from stream import cpu; c = cpu.current(); print(c.name, c.hardware, int(c.emulated))"
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2")
    env.pop(cpu.OVERRIDE_ENV, None)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    name, hardware, emulated = out.stdout.split()
    if hardware in cpu.X86_CLASSES[1:]:  # an AVX2 CPU or better
        assert name == "avx2" and emulated == str(int(hardware != "avx2"))
    else:  # an Arm or pre-AVX2 machine: the x86 limits do not apply
        assert name == hardware


def _scored(folder: Path, name: str, model, quality: dict | None = None, **meta) -> weights.Style:
    """``model`` as a calibrated style whose sidecar says ``quality`` (default: 28.0 dB against a teacher) and
    ``meta``; INT8's score unrecorded."""
    quality = quality or {"teacher": "t", "psnr_vs_teacher": 28.0}
    style = weights.save_style(model, folder, name, {"quality": quality, **meta})
    image = torch.from_numpy(frame_image(1, 48, 32)).permute(2, 0, 1)[None].float() / 127.5 - 1
    weights.save_ranges(style, model, calibration.calibrate(model, [image]), images=1)
    assert style.path == folder / f"{name}.safetensors"
    return style


@pytest.fixture(scope="module")
def wide_model():
    from stream.model import Generator
    torch.manual_seed(0)
    return Generator(width=0.75, blocks=1).eval()  # as wide as INT8 pays for on every class


@pytest.fixture
def scored_style(tmp_path, wide_model):
    """A calibrated style of 0.75x the channels; the test records INT8's score."""
    return _scored(tmp_path, "scored", wide_model)


@pytest.mark.parametrize("name", cpu.X86_CLASSES)
def test_int8_is_taken_on_every_x86_class_with_vnni_or_not_only_where_it_keeps_the_bar(scored_style, name):
    here = CpuClass(name, name)
    unscored = policy.choose(scored_style, CPU_DEVICE, "auto", here)
    assert unscored.precision != "int8" and "never scored against the teacher" in unscored.why[0] or name == "baseline"
    weights.record_int8_quality(scored_style, 27.75, 0.9)  # 0.25 dB under float: within the bar
    good = policy.choose(scored_style, CPU_DEVICE, "auto", here)
    if name == "baseline":
        assert (good.backend, good.precision) == ("torch", "fp32")
        return
    assert (good.backend, good.precision, good.cpu) == ("int8", "int8", name)
    assert ("VNNI dot products" if here.has_vnni else "7-bit weights") in good.why[-1]
    assert "in float" not in good.why[-1]
    model = weights.eager_generator(scored_style)  # a calibration that runs a layer in float says so
    weights.save_ranges(scored_style, model, weights.load_ranges(scored_style, model), images=1,
                        float_layers=["block_c.1"])
    weights.record_int8_quality(scored_style, 27.75, 0.9)
    assert policy.choose(scored_style, CPU_DEVICE, "auto", here).why[-1].endswith("; block_c.1 in float")
    weights.record_int8_quality(scored_style, 27.6, 0.9)  # 0.4 dB under: the bar is missed
    bad = policy.choose(scored_style, CPU_DEVICE, "auto", here)
    assert bad.precision == ("bf16" if here.has_bf16 else "fp32") and "more than 0.3 dB lower" in bad.why[0]


def test_explicit_precisions_devices_and_onnx_styles(scored_style, tiny_style):
    amx, arm = CpuClass("amx", "amx"), CpuClass("arm64", "arm64")
    plain = weights.resolve(tiny_style)
    assert policy.choose(plain, CPU_DEVICE, "auto", amx).precision == "bf16"  # no calibration
    assert policy.choose(plain, CPU_DEVICE, "auto", arm).precision == "fp32"
    weights.record_int8_quality(scored_style, 28.0, 0.9)
    assert policy.choose(scored_style, CPU_DEVICE, "auto", arm).precision == "fp32"  # no INT8 path on Arm
    assert policy.choose(scored_style, CPU_DEVICE, "fp32", amx).backend == "torch"
    on_gpu = policy.choose(scored_style, torch.device("cuda"), "auto", amx)
    assert (on_gpu.backend, on_gpu.precision) == ("cuda", "fp16")
    onnx = weights.Style("net", Path("net.onnx"), {}, format="onnx")
    by_onnx = policy.choose(onnx, CPU_DEVICE, "auto", amx)
    assert (by_onnx.backend, by_onnx.precision) == ("onnxruntime", "fp32")
    for bad, device, message in [("fp16", CPU_DEVICE, "needs a CUDA GPU"), ("int8", torch.device("cuda"), "runs on the CPU")]:
        with pytest.raises(AnimestreamError, match=message):
            policy.choose(scored_style, device, bad, amx)
    with pytest.raises(AnimestreamError, match="no INT8 calibration"):
        policy.choose(plain, CPU_DEVICE, "int8", amx)
    with pytest.raises(AnimestreamError, match="fp32 through onnxruntime"):
        policy.choose(onnx, CPU_DEVICE, "bf16", amx)
    with pytest.raises(ValueError):
        policy.choose(plain, CPU_DEVICE, "int4", amx)


def test_the_engine_runs_what_the_policy_picks_for_the_class(scored_style, monkeypatch):
    weights.record_int8_quality(scored_style, 27.9, 0.9)
    monkeypatch.setattr(cpu, "current", lambda: CpuClass("avx2", "avx2"))
    engine = Engine(scored_style, max_side=64, device="cpu")
    assert (engine.precision, engine.backend.name, engine.choice.cpu) == ("int8", "int8", "avx2")
    image = frame_image(1, 48, 32)
    by_policy = engine(image).copy()
    assert np.array_equal(by_policy, Engine(scored_style, max_side=64, device="cpu", precision="int8")(image))
    assert not np.array_equal(by_policy, Engine(scored_style, max_side=64, device="cpu", precision="fp32")(image))


class _Constant:
    """A fake backend: every pixel comes out mid-grey (0.0 in [-1, 1]), and it counts its calls."""

    name, precision, module = "constant", "fp32", None

    def __init__(self, req: backends.BackendRequest):
        self.device, self.calls, self.style = req.device, [], req.style.name

    def __call__(self, frame):
        self.calls.append(tuple(frame.shape))
        return torch.zeros(frame.shape, dtype=torch.float32)


def test_a_registered_backend_runs_every_frame(tiny_style, monkeypatch):
    monkeypatch.setitem(backends.BACKENDS, "constant", _Constant)
    engine = Engine(tiny_style, max_side=32, device="cpu", backend="constant")
    out = engine(frame_image(0, 64, 48))
    assert out.shape == (48, 64, 3) and set(np.unique(out)) == {128}  # (0 + 1) * 127.5, rounded
    assert engine.backend.calls == [(1, 3, 24, 32)] and engine.choice.why == ("constant: asked for",)
    assert isinstance(engine.backend, backends.Backend)
    with pytest.raises(ValueError, match="backend must be one of"):
        Engine(tiny_style, device="cpu", backend="nonesuch")


def test_doctor_names_the_class_and_each_styles_path(tmp_path):
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2", ANIMESTREAM_HOME=str(tmp_path))
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        env.pop(name, None)
    run = subprocess.run([sys.executable, "-m", "stream", "doctor", "--json", "--device", "cpu"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    rep = json.loads(run.stdout)
    expected = "avx2" if rep["cpu"]["hardware"] not in ("baseline", "arm64", "arm64-bf16") else rep["cpu"]["hardware"]
    assert rep["cpu"]["class"] == expected and rep["policy"]["auto"] == list(policy.POLICY[expected].auto)
    rows = {r["style"]: r for r in rep["styles"]}
    assert {weights.DEFAULT_STYLE, weights.DEFAULT_LIVE_STYLE} <= set(rows)
    assert all(r["precision"] in ("int8", "fp32") and r["why"] for r in rows.values())  # no bf16 on AVX2
    if sys.platform.startswith("linux"):
        assert rep["preview"] == "no X display: DISPLAY is not set"
    text = subprocess.run([sys.executable, "-m", "stream", "doctor", "--style", "shinkai"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and f"class {expected}" in text.stdout and "shinkai" in text.stdout
    assert "Preview  no window: no X display" in text.stdout or not sys.platform.startswith("linux")
    bad = subprocess.run([sys.executable, "-m", "stream", "doctor"], env=dict(env, ANIMESTREAM_CPU_CLASS="z80"),
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "not a CPU class" in bad.stderr


def test_with_native_bf16_small_caps_skip_int8_and_without_it_they_keep_it(scored_style):
    weights.record_int8_quality(scored_style, 28.0, 0.9)
    amx, avx2 = CpuClass("amx", "amx"), CpuClass("avx2", "avx2")
    assert policy.POLICY["amx"].int8_min_side == 256 and policy.POLICY["avx2"].int8_min_side == 0
    live = policy.choose(scored_style, CPU_DEVICE, "auto", amx, max_side=160)
    assert live.precision == "bf16" and "at a 160 px cap the next path is faster" in live.why[0]
    for side in (256, 512, 0):  # 0: no cap, the frame's own size
        assert policy.choose(scored_style, CPU_DEVICE, "auto", amx, max_side=side).precision == "int8"
    assert policy.choose(scored_style, CPU_DEVICE, "auto", avx2, max_side=160).precision == "int8"


def test_with_native_bf16_a_narrow_network_skips_int8_which_would_only_add_flicker(tmp_path, tiny_model,
                                                                                     scored_style):
    narrow = _scored(tmp_path, "narrow", tiny_model)  # 0.25x the channels
    for style in (narrow, scored_style):
        weights.record_int8_quality(style, 28.0, 0.9)
    amx = CpuClass("amx", "amx")
    assert policy.POLICY["amx"].int8_min_width == 0.75
    kept = policy.choose(narrow, CPU_DEVICE, "auto", amx, max_side=512)
    assert kept.precision == "bf16" and "at 0.25x width the next path is as fast here" in kept.why[0]
    assert policy.choose(scored_style, CPU_DEVICE, "auto", amx, max_side=512).precision == "int8"
    assert policy.choose(narrow, CPU_DEVICE, "int8", amx).precision == "int8"  # asked for: taken
    for name in ("avx2", "avx512-vnni"):  # without native bf16 INT8 pays at every width
        assert policy.POLICY[name].int8_min_width == 0
        assert policy.choose(narrow, CPU_DEVICE, "auto", CpuClass(name, name)).precision == "int8"


def test_a_narrower_variant_runs_in_its_styles_place_where_the_row_asks_and_it_keeps_the_bar(
        tmp_path, monkeypatch, tiny_model):
    from stream import doctor
    from stream.model import Generator
    monkeypatch.setenv("ANIMESTREAM_HOME", str(tmp_path))
    folder = weights.user_styles_dir()
    quality = {"teacher": "t", "teacher_sha256": "ab" * 32, "psnr_vs_teacher": 28.0}
    weights.save_style(tiny_model, folder, "full", {"quality": quality})
    torch.manual_seed(1)
    narrow_model = Generator(width=0.125, blocks=1).eval()
    narrow = weights.save_style(narrow_model, folder, "full-fast",
                                {"quality": {**quality, "psnr_vs_teacher": 27.9}, "variant_of": "full"})
    image = torch.from_numpy(frame_image(1, 48, 32)).permute(2, 0, 1)[None].float() / 127.5 - 1
    weights.save_ranges(narrow, narrow_model, calibration.calibrate(narrow_model, [image]), images=1)
    weights.record_int8_quality(narrow, 27.75, 0.9)  # 0.25 dB under full's float: within the bar
    full = weights.resolve("full")
    avx2, amx = CpuClass("avx2", "avx2"), CpuClass("amx", "amx")

    taken = policy.choose(full, CPU_DEVICE, "auto", avx2)
    assert (taken.variant.name, taken.backend, taken.precision) == ("full-fast", "int8", "int8")
    assert "full-fast, a narrower student: int8 scores 27.75 dB" in taken.why[0]
    assert policy.choose(full, CPU_DEVICE, "auto", amx).variant is None  # a row without `narrower`
    assert policy.choose(full, CPU_DEVICE, "fp32", avx2).variant is None  # a precision asked for: its own weights
    assert policy.choose(narrow, CPU_DEVICE, "auto", avx2).variant is None  # the variant itself has none

    monkeypatch.setattr(cpu, "current", lambda: avx2)
    engine = Engine("full", max_side=64, device="cpu")
    assert (engine.style, engine.net.name, engine.precision) == ("full", "full-fast", "int8")
    frame = frame_image(2, 48, 32)
    assert np.array_equal(engine(frame).copy(), Engine("full-fast", max_side=64, device="cpu", precision="int8")(frame))
    assert doctor.report([full], CPU_DEVICE)["styles"][0]["network"] == "full-fast"

    weights.record_int8_quality(narrow, 27.6, 0.9)  # 0.4 dB under: the bar is missed, full runs itself
    missed = policy.choose(full, CPU_DEVICE, "auto", avx2)
    assert missed.variant is None and missed.why[0].startswith("not full-fast: int8 scores 27.60 dB")
    assert "more than 0.3 dB lower" in missed.why[0]
    other = json.loads(narrow.path.with_suffix(".json").read_text())
    other["quality"]["teacher_sha256"] = "cd" * 32
    narrow.path.with_suffix(".json").write_text(json.dumps(other))
    weights.record_int8_quality(weights.resolve("full-fast"), 27.9, 0.9)
    assert "not distilled from full's teacher" in policy.choose(full, CPU_DEVICE, "auto", avx2).why[0]


def test_on_the_other_rows_a_narrower_variant_runs_in_its_styles_place_only_where_it_costs_nothing(
        tmp_path, monkeypatch, wide_model, tiny_model):
    monkeypatch.setenv("ANIMESTREAM_HOME", str(tmp_path))
    folder = weights.user_styles_dir()
    quality = {"teacher": "t", "teacher_sha256": "ab" * 32, "psnr_vs_teacher": 28.0}
    full = _scored(folder, "full", wide_model, quality)  # 0.75x the channels
    fast = _scored(folder, "full-fast", tiny_model, {**quality, "psnr_vs_teacher": 27.9}, variant_of="full")  # 0.25x
    weights.record_int8_quality(full, 27.80, 0.9)
    weights.record_int8_quality(fast, 27.85, 0.9)
    full = weights.resolve("full")
    wide, amx = CpuClass("avx512-bf16", "avx512-bf16"), CpuClass("amx", "amx")
    assert not policy.POLICY["avx512-bf16"].narrower and not policy.POLICY["amx"].narrower

    taken = policy.choose(full, CPU_DEVICE, "auto", wide, max_side=512)  # INT8 both: 27.85 against 27.80
    assert (taken.variant.name, taken.precision) == ("full-fast", "int8")
    assert taken.why[0] == ("full-fast, a narrower student: int8 scores 27.85 dB against the teacher, at least "
                            "full's own int8 here (27.80), with 0.33x the channels")
    small = policy.choose(full, CPU_DEVICE, "auto", wide, max_side=160)  # bf16 both: 27.90 against 28.00
    assert small.variant is None and small.precision == "bf16"
    assert small.why[0] == "not full-fast: bf16 scores 27.90 dB against the teacher, below full's own bf16 here (28.00)"
    # amx runs a 0.25x network in bf16 (int8_min_width), full in INT8: a slower precision is no saving
    assert "its bf16 path is slower here than full's int8" in policy.choose(full, CPU_DEVICE, "auto", amx).why[0]
    assert policy.choose(full, CPU_DEVICE, "int8", wide).variant is None  # a precision asked for: its own weights

    weights.record_int8_quality(weights.resolve("full-fast"), 27.79, 0.9)  # 0.01 dB under full's INT8
    lower = policy.choose(full, CPU_DEVICE, "auto", wide, max_side=512)
    assert lower.variant is None and lower.precision == "int8" and "below full's own int8 here (27.80)" in lower.why[0]
    twin = weights.save_style(wide_model, folder, "full-twin", {"quality": {**quality, "psnr_vs_teacher": 28.5},
                                                               "variant_of": "full"})
    assert policy.choose(full, CPU_DEVICE, "auto", wide, max_side=160).why[1] == "not full-twin: not narrower than full"
    assert twin.architecture["width"] == full.architecture["width"]
