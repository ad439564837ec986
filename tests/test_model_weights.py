"""The generator's layout, the weights formats load_model accepts, and the built-in style."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch

from media import WEIGHTS, sha256
from stream import weights
from stream.engine import Engine
from stream.errors import StyleNotFoundError, WeightsError
from stream.model import Generator

SPEC = Path(__file__).resolve().parent / "data" / "animeganv2_state_dict.json"
OFFICIAL_PARAMETERS = 2_143_552


@pytest.fixture(scope="module")
def spec() -> dict:
    return json.loads(SPEC.read_text())


@pytest.fixture(scope="module")
def full_model() -> Generator:
    torch.manual_seed(1)
    model = Generator().eval()
    # Non-trivial GroupNorm affine parameters, so a wrong mapping of names would show in the output.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias") or p.ndim == 1:
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.uniform_(-0.2, 0.2)
    return model


def _x(h: int = 48, w: int = 64, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g) * 2 - 1


def test_state_dict_names_and_shapes_match_the_official_checkpoints(spec):
    state = Generator().state_dict()
    expected = {k: list(v) for k, v in spec["tensors"].items()}
    assert sorted(state) == sorted(expected)
    mismatched = {k: (list(state[k].shape), expected[k]) for k in expected if list(state[k].shape) != expected[k]}
    assert mismatched == {}


def test_parameter_count_is_the_official_one(spec):
    model = Generator()
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMETERS
    assert spec["parameters"] == OFFICIAL_PARAMETERS
    assert sum(torch.Size(s).numel() for s in spec["tensors"].values()) == OFFICIAL_PARAMETERS


def test_skip_generator_adds_only_a_photo_grade_and_starts_as_the_identity(spec):
    model = Generator(skip=True).eval()
    assert sorted(model.state_dict()) == sorted([*spec["tensors"], "photo_grade.weight", "photo_grade.bias"])
    x = _x(seed=5)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x)
        model.photo_grade.weight.zero_()  # red = 0.5 r^2 - 0.25 at full resolution, past the bottleneck
        model.photo_grade.weight[0, 3] = 0.5
        model.photo_grade.bias[0] = -0.25
        torch.testing.assert_close(model(x)[:, 0], 0.5 * x[:, 0] ** 2 - 0.25)
        model.out_layer[0].weight.fill_(10.0)  # saturate the tanh: the output stays clamped to [-1, 1]
        y = model(x)
    assert float(y.min()) >= -1.0 and float(y.max()) <= 1.0 and not torch.allclose(y, x)


def test_generator_maps_to_same_size_in_range(full_model):
    with torch.no_grad():
        for h, w in ((48, 64), (36, 52)):
            y = full_model(_x(h, w))
            assert y.shape == (1, 3, h, w)
            assert float(y.min()) >= -1.0 and float(y.max()) <= 1.0


def test_generator_is_batch_independent(full_model):
    x = torch.cat([_x(seed=3), _x(seed=4)])
    with torch.no_grad():
        both = full_model(x)
        one = full_model(x[1:])
    torch.testing.assert_close(both[1:], one, atol=1e-5, rtol=1e-4)


def test_official_state_dict_loads_strict_and_through_load_model(tmp_path, full_model):
    path = tmp_path / "official.pt"
    torch.save(full_model.state_dict(), path)

    fresh = Generator()
    result = fresh.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    assert not result.missing_keys and not result.unexpected_keys

    loaded = weights.load_model(path)
    assert isinstance(loaded, torch.jit.ScriptModule)
    assert not loaded.training
    x = _x()
    with torch.no_grad():
        expected = full_model(x)
        torch.testing.assert_close(fresh.eval()(x), expected, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(loaded(x), expected, atol=1e-5, rtol=1e-4)


def test_state_dict_of_the_wrong_architecture_is_a_weights_error(tmp_path, tiny_model):
    path = tmp_path / "lite_state_dict.pt"
    torch.save(tiny_model.state_dict(), path)  # a -lite layout is not the official one
    with pytest.raises(WeightsError, match="lite_state_dict.pt"):
        weights.load_model(path)


def test_a_pickle_that_is_not_a_state_dict_is_a_weights_error(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(WeightsError, match="list.pt"):
        weights.load_model(path)


@pytest.mark.parametrize("kind", ["trace", "script"])
def test_torchscript_round_trip_through_load_model_and_engine(tmp_path, tiny_model, kind):
    from stream.engine import Engine

    x = _x()
    path = tmp_path / f"{kind}.pt"
    with torch.no_grad():
        module = torch.jit.trace(tiny_model, x) if kind == "trace" else torch.jit.script(tiny_model)
    module.save(str(path))

    loaded = weights.load_model(path)
    with torch.no_grad():
        expected = tiny_model(x)
        torch.testing.assert_close(loaded(x), expected, atol=1e-5, rtol=1e-4)

    # Engine at the model's own size (64x48 is a multiple of 4, max_side 64): no resizing involved,
    # so its uint8 result is the eager output quantised.
    engine = Engine(path, max_side=64, precision="fp32", device="cpu")
    assert engine.style == kind
    image = ((x[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    out = engine(image)
    with torch.no_grad():
        ref_in = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float() / 127.5 - 1
        ref = ((tiny_model(ref_in)[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    assert out.shape == image.shape and out.dtype == image.dtype
    diff = abs(out.astype(int) - ref.astype(int))
    assert diff.max() <= 1, f"engine output differs from the eager model by up to {diff.max()} levels"


BUILTINS = sorted(p.stem for p in WEIGHTS.glob("*.json"))


def test_builtin_styles_are_safetensors_never_torchscript():
    assert BUILTINS, "no built-in styles"
    for path in WEIGHTS.iterdir():
        assert path.suffix in (".safetensors", ".json", ".ranges"), f"{path.name}: not a style file"
        assert not zipfile.is_zipfile(path), f"{path.name} is a zip archive (TorchScript or torch.save)"
    for name in BUILTINS:
        assert (WEIGHTS / f"{name}.safetensors").exists(), name


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_loads_through_the_public_loader_as_torchscript(name):
    style = weights.resolve(name)
    assert style.origin == "built-in" and style.format == "safetensors"
    assert style.sha256 == sha256(style.path) == style.meta["sha256"]
    module = weights.load_model(name)
    assert isinstance(module, torch.jit.ScriptModule) and not module.training
    arch = style.meta["architecture"]
    assert {"width", "blocks", "skip", "upsample"} <= set(arch) <= {"width", "blocks", "skip", "upsample",
                                                                   "guided_filter", "norm"}
    assert (module.width, module.blocks, module.skip, module.upsample, module.norm) == (
        arch["width"], arch["blocks"], arch["skip"], arch["upsample"], arch.get("norm", "layer"))
    guided = arch.get("guided_filter", {"radius": 0, "eps": 0.0})
    assert (module.guided_radius, module.guided_eps) == (guided["radius"], guided["eps"])
    x = _x(32, 32)
    with torch.no_grad():
        y = module(x)
    assert y.shape == x.shape and float(y.abs().max()) <= 1.0
    assert style.meta["parameters"] == sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", BUILTINS)
def test_fp16_storage_changes_each_builtin_by_under_half_a_level(name):
    change = weights.resolve(name).meta["storage_change"]
    assert change["storage"] == "float16" and change["images"] >= 4
    assert change["mean_levels"] < 0.5 and change["max_levels"] < 2.0


def test_fp16_storage_is_measured_against_the_float_weights(tiny_model):
    torch.manual_seed(3)
    change = weights.storage_change(tiny_model, [_x(32, 48)])
    assert 0 < change["mean_levels"] < 0.5  # fp16 rounding changes the output, but by far less than a level
    rounded = Generator(tiny_model.width, tiny_model.blocks).eval()
    rounded.load_state_dict({k: v.half().float() for k, v in tiny_model.state_dict().items()})
    assert weights.storage_change(rounded, [_x(32, 48)])["mean_levels"] == 0.0  # already fp16: no change


def test_export_writes_torchscript_that_gives_the_same_output(tmp_path, cli):
    out = tmp_path / "shinkai.pt"
    rc, _, err = cli("weights", "export", "shinkai", str(out))
    assert rc == 0 and str(out) in err
    assert zipfile.is_zipfile(out)
    module = torch.jit.load(str(out))
    x = _x(40, 56)
    with torch.no_grad():
        torch.testing.assert_close(module(x), weights.load_model("shinkai")(x), atol=0, rtol=0)
    style = weights.resolve(out)  # and it is a style file again: --style out.pt
    assert style.format == "torchscript"
    frame = ((x[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    a = Engine(out, max_side=0, precision="fp32", device="cpu")(frame).copy()
    b = Engine("shinkai", max_side=0, precision="fp32", device="cpu")(frame)
    assert (a == b).all()


def test_export_to_a_missing_folder_is_a_usage_error(tmp_path, cli, capsys):
    with pytest.raises(SystemExit) as e:
        cli("weights", "export", "shinkai", str(tmp_path / "no" / "x.pt"))
    assert e.value.code == 2 and "does not exist" in capsys.readouterr().err


def test_a_style_saved_by_another_torch_loads_here(tmp_path, tiny_model):
    """What portability means: the weights file holds tensors only, and the generator is scripted on load."""
    from safetensors import safe_open

    path = weights.export_style(tiny_model, tmp_path, "portable", source="test", license="MIT",
                                training_steps=0, quality={})
    with safe_open(str(path), framework="pt") as f:
        assert set(f.keys()) == set(tiny_model.state_dict())
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())
    assert "code/" not in path.read_bytes().decode("latin-1")  # no TorchScript source inside


def test_registry_lists_and_resolves_the_default_styles():
    styles = {s.name: s for s in weights.list_styles()}
    assert weights.DEFAULT_STYLE == "hayao" and weights.DEFAULT_LIVE_STYLE == "hayao-lite"
    for name in ("hayao", "hayao-lite", "shinkai"):
        assert styles[name].origin == "built-in"
        style = weights.resolve(name)
        assert style.path.resolve() == (WEIGHTS / f"{name}.safetensors").resolve()
        assert style.meta["name"] == name and style.verified
        assert style.meta["sha256"] == sha256(style.path)
    assert not styles["hayao"].lite and styles["hayao-lite"].lite


@pytest.mark.parametrize("live", [False, True])
def test_the_cli_runs_the_default_style_or_for_a_live_source_its_real_time_sibling(cli, clip, tmp_path, monkeypatch,
                                                                                  live):
    from stream import cli as cli_module
    from stream.errors import AnimestreamError

    asked = []

    def fake_engine(style, options):
        asked.append(style)
        raise AnimestreamError("stop here")

    monkeypatch.setattr(cli_module, "Engine", fake_engine)
    rc, _, err = cli(clip, tmp_path / "out.mp4", *(["--live"] if live else []))
    assert rc == 1 and "stop here" in err
    assert asked == ["hayao-lite" if live else "hayao"]
    rc, _, _ = cli(clip, tmp_path / "out.mp4", "--style", "shinkai", *(["--live"] if live else []))
    assert asked[-1] == "shinkai"


def test_unknown_style_name_lists_the_known_ones():
    with pytest.raises(StyleNotFoundError, match=r"no-such-style.*shinkai"):
        weights.load_model("no-such-style")


def test_missing_weights_path_is_a_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="absent.pt"):
        weights.load_model(tmp_path / "absent.pt")


def test_sidecar_checksum_is_enforced(tmp_path, tiny_model):
    pt = weights.export_style(tiny_model, tmp_path, "mine", source="test", license="MIT",
                              training_steps=1, quality={})
    meta = json.loads(pt.with_suffix(".json").read_text())
    assert meta["sha256"] == sha256(pt)
    assert meta["parameters"] == sum(p.numel() for p in tiny_model.parameters())
    weights.load_model(pt)  # intact: loads
    data = bytearray(pt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pt.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        weights.load_model(pt)


def test_user_style_is_registered_and_usable_by_name(isolated_home, tiny_model, cli):
    from stream.engine import Engine

    weights.export_style(tiny_model, weights.user_styles_dir(), "tinyuser", source="test", license="MIT",
                         training_steps=1, quality={})
    try:
        styles = {s.name: s for s in weights.list_styles()}
        assert styles["tinyuser"].origin == "user"
        engine = Engine("tinyuser", max_side=32, precision="fp32", device="cpu")
        assert engine.style == "tinyuser"
        rc, out, _ = cli("weights", "list")
        assert rc == 0 and "tinyuser" in out and "shinkai" in out
    finally:
        for suffix in (".safetensors", ".json"):
            (weights.user_styles_dir() / f"tinyuser{suffix}").unlink(missing_ok=True)


LITES = sorted(n for n in BUILTINS if n.endswith("-lite"))


@pytest.mark.parametrize("name", LITES)
def test_builtin_lite_styles_are_small_and_capped_below_the_full_ones(name):
    meta = json.loads((WEIGHTS / f"{name}.json").read_text())
    full = WEIGHTS / f"{name.removesuffix('-lite')}.json"
    full_cap = json.loads(full.read_text())["recommended_max_side"] if full.exists() else 512
    assert meta["recommended_max_side"] < full_cap
    assert meta["parameters"] < OFFICIAL_PARAMETERS / 3
    assert Engine(name, device="cpu").max_side == meta["recommended_max_side"]


def test_eval_side_is_the_sidecars_measured_resolution_and_none_where_it_does_not_say_one():
    sides = {s.name: s.eval_side for s in weights.list_styles() if s.origin == "built-in"}
    assert sides["hayao"] == 512 and all(sides[n] == weights.find_style(n).recommended_max_side for n in LITES)
    style = weights.find_style("hayao")
    for resolution, side in [("longest side 384 px", 384), (weights.eval_resolution(300), 300),
                             ("half of the pair's resolution", None), ("", None)]:
        meta = {**style.meta, "quality": {**style.meta["quality"], "resolution": resolution}}
        assert weights.Style(style.name, style.path, meta).eval_side == side


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_a_style_is_resolved_and_hashed_once_from_the_command_line_to_the_model(precision, tmp_path, cli,
                                                                               monkeypatch):
    from media import write_image

    hashed, resolved = [], []
    real_hash, real_resolve = weights.sha256_of, weights.resolve
    monkeypatch.setattr(weights, "sha256_of", lambda p: hashed.append(p) or real_hash(p))
    monkeypatch.setattr(weights, "resolve", lambda s: resolved.append(s) or real_resolve(s))
    image = write_image(tmp_path / "in.png")
    rc, _, err = cli(image, tmp_path / "out.png", "--style", "shinkai", "--precision", precision, "--device", "cpu",
                     "-q")
    assert rc == 0, err
    assert [p.name for p in hashed] == ["shinkai.safetensors"]
    assert [type(s).__name__ for s in resolved] == ["str"] + ["Style"] * (len(resolved) - 1)


def test_user_folders_are_the_platforms_unless_animestream_home_says(monkeypatch, tmp_path):
    import platformdirs

    monkeypatch.delenv("ANIMESTREAM_HOME", raising=False)
    assert weights.user_home() == Path(platformdirs.user_cache_dir("animestream", appauthor=False))
    monkeypatch.setenv("ANIMESTREAM_HOME", str(tmp_path))
    assert weights.user_styles_dir() == tmp_path / "styles"


def _tf1_resize_bilinear(x: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """TensorFlow 1's legacy resize_bilinear (align_corners=False, half_pixel_centers=False), written out."""
    h, w = x.shape[-2:]
    ys, xs = torch.arange(out_h) * (h / out_h), torch.arange(out_w) * (w / out_w)
    y0, x0 = ys.floor().long(), xs.floor().long()
    y1, x1 = (y0 + 1).clamp(max=h - 1), (x0 + 1).clamp(max=w - 1)
    dy, dx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = x[..., y0, :][..., x0] * (1 - dx) + x[..., y0, :][..., x1] * dx
    bottom = x[..., y1, :][..., x0] * (1 - dx) + x[..., y1, :][..., x1] * dx
    return top * (1 - dy) + bottom * dy


@pytest.mark.parametrize("size", [(10, 14), (9, 13), (5, 7)])
def test_asymmetric_upsampling_is_tensorflow_1s_resize(size):
    from stream.model import resize_asymmetric

    x = _x(5, 7, seed=9)
    torch.testing.assert_close(resize_asymmetric(x, list(size)), _tf1_resize_bilinear(x, *size), atol=1e-5, rtol=0)
    if size != (5, 7):  # upsampling: what the PyTorch ports do (align_corners=True) differs
        assert not torch.allclose(torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=True),
                                  _tf1_resize_bilinear(x, *size), atol=1e-3)


def _with_and_without_the_option(model: Generator, without: Generator) -> tuple[torch.Tensor, ...]:
    """(input, output, output of ``without`` given the same weights): an architecture option scripts, and
    it changes the output."""
    without.load_state_dict(model.state_dict())
    x = _x(48, 64, seed=4)
    with torch.no_grad():
        y, y_without = model(x), without(x)
        torch.testing.assert_close(torch.jit.script(model)(x), y, atol=1e-5, rtol=1e-4)
    assert (y - y_without).abs().mean() > 0.01  # the option is not a no-op
    return x, y, y_without


def test_asymmetric_generator_scripts_and_its_int8_path_follows_it():
    from stream import calibration, quant

    torch.manual_seed(2)
    model = Generator(width=0.25, blocks=1, upsample="asymmetric").eval()
    x, y, y_align = _with_and_without_the_option(model, Generator(width=0.25, blocks=1).eval())
    int8 = quant.Int8Generator(model, calibration.calibrate(model, [x]))
    with torch.inference_mode():
        q = int8(x)
    assert (q - y).abs().mean() < (q - y_align).abs().mean() / 2  # INT8 follows its own upsampling
    with pytest.raises(ValueError, match="upsample must be one of"):
        Generator(upsample="nearest")


def _guided_filter_reference(guide: torch.Tensor, src: torch.Tensor, r: int, eps: float) -> torch.Tensor:
    """He et al.'s guided filter written as White-box Cartoonization's code does it: box sums divided by
    the count of pixels inside the picture, one channel at a time, in float64."""
    import numpy as np

    x, y = guide[0].double().numpy(), src[0].double().numpy()

    def box(a: np.ndarray) -> np.ndarray:
        h, w = a.shape
        out = np.empty_like(a)
        for i in range(h):
            for j in range(w):
                out[i, j] = a[max(0, i - r):i + r + 1, max(0, j - r):j + r + 1].mean()
        return out

    out = []
    for c in range(x.shape[0]):
        mx, my = box(x[c]), box(y[c])
        a = (box(x[c] * y[c]) - mx * my) / (box(x[c] * x[c]) - mx * mx + eps)
        b = my - a * mx
        out.append(box(a) * x[c] + box(b))
    return torch.from_numpy(np.stack(out)).unsqueeze(0).float()


@pytest.mark.parametrize("radius", [1, 2])
def test_guided_filter_matches_the_reference_and_keeps_edges_of_the_guide(radius):
    from stream.model import guided_filter

    guide, src = _x(12, 17, seed=5), _x(12, 17, seed=6)
    torch.testing.assert_close(guided_filter(guide, src, radius, 5e-3),
                               _guided_filter_reference(guide, src, radius, 5e-3), atol=2e-5, rtol=1e-4)
    # A flat source stays flat; a source that is the guide comes back nearly unchanged (small eps).
    flat = torch.full_like(src, 0.3)
    torch.testing.assert_close(guided_filter(guide, flat, radius, 5e-3), flat, atol=1e-5, rtol=0)
    assert (guided_filter(guide, guide, radius, 1e-6) - guide).abs().max() < 1e-3
    # bf16 in, bf16 out, computed in fp32: no worse than rounding the fp32 result.
    low = guided_filter(guide.bfloat16(), src.bfloat16(), radius, 5e-3)
    assert low.dtype == torch.bfloat16
    assert (low.float() - guided_filter(guide.bfloat16().float(), src.bfloat16().float(), radius, 5e-3)).abs().max() < 0.02


def test_a_guided_generator_scripts_round_trips_its_sidecar_and_its_int8_path_follows_it(tmp_path):
    from stream import calibration, quant

    torch.manual_seed(3)
    model = Generator(width=0.25, blocks=1, skip=True, guided_radius=1, guided_eps=5e-3).eval()
    with torch.no_grad():
        model.out_layer[0].weight.normal_(0, 0.3)  # an output that differs from the photo
    x, y, y_plain = _with_and_without_the_option(model, Generator(width=0.25, blocks=1, skip=True).eval())
    path = weights.export_style(model, tmp_path, "guided", source="test", license="MIT", training_steps=0, quality={})
    style = weights.resolve(path)
    assert style.architecture["guided_filter"] == {"radius": 1, "eps": 5e-3}
    with torch.no_grad():
        torch.testing.assert_close(weights.load_model(style)(x), y, atol=0.02, rtol=0)  # fp16 storage
    int8 = quant.Int8Generator(model, calibration.calibrate(model, [x]))
    with torch.inference_mode():
        q = int8(x)
    assert (q - y).abs().mean() < (q - y_plain).abs().mean() / 2  # INT8 filters too
    with pytest.raises(ValueError, match="guided filter"):
        Generator(guided_radius=1, guided_eps=0.0)


def _exported_runs_on_the_float_paths(model: Generator, x: torch.Tensor, y: torch.Tensor, tmp_path: Path,
                                      name: str) -> weights.Style:
    """``model`` exported as style ``name``: its stored weights give ``y`` for ``x`` (within fp16 storage), and
    the engine's fp32 and bf16 CPU paths paint ``x`` as a frame within 2 levels of ``y``. Returns the style."""
    path = weights.export_style(model, tmp_path, name, source="test", license="MIT", training_steps=0, quality={})
    style = weights.resolve(path)
    with torch.no_grad():
        torch.testing.assert_close(weights.load_model(style)(x), y, atol=0.02, rtol=0)
    frame = ((x[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    expected = ((y[0].permute(1, 2, 0) + 1) * 127.5).numpy()
    for precision in ("fp32", "bf16"):
        got = Engine(path, max_side=64, precision=precision, device="cpu")(frame).astype("float32")
        assert abs(got - expected).mean() < 2.0, precision
    return style


def test_an_instance_norm_generator_normalises_each_channel_round_trips_and_has_no_int8_path(tmp_path):
    from stream import calibration, quant

    torch.manual_seed(7)
    model = Generator(width=0.25, blocks=1, norm="instance").eval()
    plain = Generator(width=0.25, blocks=1).eval()
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_groups == m.num_channels for m in norms)
    x, y, _ = _with_and_without_the_option(model, plain)
    # Per channel: the first norm's output has each channel at its own bias on average, where a single
    # group leaves the channels' means apart.
    first = model.block_a[0]
    with torch.no_grad():
        out = first[2](first[1](first[0](x)))
    torch.testing.assert_close(out.mean(dim=(2, 3))[0], first[2].bias, atol=1e-4, rtol=0)
    style = _exported_runs_on_the_float_paths(model, x, y, tmp_path, "inorm")
    assert style.architecture["norm"] == "instance"
    assert "norm" not in plain.architecture()  # sidecars of single-group styles stay as they were
    assert weights.eager_generator(weights.load_model(style)).norm == "instance"
    with pytest.raises(WeightsError, match="no INT8 path"):
        calibration.calibrate_style(style, tmp_path)
    with pytest.raises(ValueError, match="single-group norms"):
        quant.Int8Generator(model, calibration.calibrate(plain, [x]))
    with pytest.raises(ValueError, match="norm must be one of"):
        Generator(norm="batch")


def test_a_unet_generator_starts_as_the_style_it_starts_from_carries_encoder_features_and_has_no_int8_path(
        tmp_path):
    """``unet=True``: started from a plain style's weights it computes that style until its skips train;
    each skip learns (gets a gradient), and trained alone they bring the output closer to a target; it
    round-trips through a sidecar and runs on the float CPU paths, and says it has no INT8 path."""
    from stream import calibration
    from stream.train import _load_init

    torch.manual_seed(9)
    plain = Generator(width=0.25, blocks=1, skip=True).eval()
    with torch.no_grad():
        plain.out_layer[0].weight.normal_(0.0, 0.2)
        plain.photo_grade.bias.fill_(0.05)  # not the identity grade, so a reset of it would show
    model = Generator(width=0.25, blocks=1, skip=True, unet=True)
    _load_init(model, plain.state_dict(), init_skip=True)
    x = _x(48, 64, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x), atol=0, rtol=0)
    with pytest.raises(RuntimeError, match="unexpected"):
        _load_init(Generator(width=0.25, blocks=1, skip=True), model.state_dict(), init_skip=True)
    skips = [model.from_full.weight, model.from_half.weight]
    opt = torch.optim.Adam(skips, lr=1e-2)
    losses = []
    for _ in range(6):
        loss = torch.nn.functional.mse_loss(model(x), x.flip(-1))
        opt.zero_grad()
        loss.backward()
        assert all(w.grad.abs().max() > 0 for w in skips)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.99  # only the skips train, and they bring the output closer
    model.eval()
    with torch.no_grad():
        for w in skips:
            w.normal_(0.0, 0.3)  # skips that matter, so that a path that dropped them would show below
        y = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), y, atol=1e-5, rtol=1e-4)
        assert (y - plain(x)).abs().mean() * 127.5 > 6  # levels (0-255): the skips change what it paints
    style = _exported_runs_on_the_float_paths(model, x, y, tmp_path, "unet")
    assert style.architecture["unet"] is True
    assert "unet" not in plain.architecture()  # sidecars of styles without skips stay as they were
    assert weights.eager_generator(weights.load_model(style)).unet
    with pytest.raises(WeightsError, match="no INT8 path"):
        calibration.calibrate_style(style, tmp_path)


def test_a_norm_free_style_round_trips_and_runs_on_every_cpu_path(tmp_path):
    import cv2

    from stream import calibration
    from stream.fold import folded

    torch.manual_seed(8)
    plain = Generator(width=0.25, blocks=1, skip=True).eval()
    with torch.no_grad():
        plain.out_layer[0].weight.normal_(0.0, 0.2)
    x = _x(48, 64, seed=5)
    model = Generator(width=0.25, blocks=1, skip=True, norm="affine").eval()
    model.load_state_dict(folded(plain, [x]))
    with torch.no_grad():
        y = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), y, atol=1e-5, rtol=1e-4)
    path = weights.export_style(model, tmp_path, "nonorm", source="test", license="MIT", training_steps=0, quality={})
    style = weights.resolve(path)
    assert style.architecture["norm"] == "affine"
    assert weights.eager_generator(weights.load_model(style)).norm == "affine"
    images = tmp_path / "calib"
    images.mkdir()
    frame = ((x[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    cv2.imwrite(str(images / "x.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    calibration.calibrate_style(style, images, max_side=64)  # an INT8 path, as the single-group styles
    expected = ((y[0].permute(1, 2, 0) + 1) * 127.5).numpy()
    for precision in ("fp32", "bf16", "int8"):
        engine = Engine(path, max_side=64, precision=precision, device="cpu")
        assert engine.precision == precision
        got = engine(frame).astype("float32")
        assert abs(got - expected).mean() < 2.0, precision
