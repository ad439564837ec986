"""The generator's layout, the weights formats load_model accepts, and the built-in style."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from media import PAPRIKA, sha256
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
    engine = Engine(path, max_side=64, precision="fp32")
    assert engine.style == kind
    image = ((x[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    out = engine(image)
    with torch.no_grad():
        ref_in = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float() / 127.5 - 1
        ref = ((tiny_model(ref_in)[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    assert out.shape == image.shape and out.dtype == image.dtype
    diff = abs(out.astype(int) - ref.astype(int))
    assert diff.max() <= 1, f"engine output differs from the eager model by up to {diff.max()} levels"


def test_builtin_paprika_loads_with_plain_torch_jit_load():
    module = torch.jit.load(str(PAPRIKA), map_location="cpu").eval()
    x = _x(32, 32)
    with torch.no_grad():
        y = module(x)
    assert y.shape == x.shape
    assert float(y.abs().max()) <= 1.0


TRAINED_STYLES = sorted(p.stem for p in PAPRIKA.parent.glob("*.json")
                        if "val_pairs" in json.loads(p.read_text()).get("quality", {}))
SKIP_PARAMETERS = 21  # photo_grade: a 1x1 convolution of [x, x*x], 3 x 6 weights + 3 biases


def test_paprika_and_shinkai_ship_trained_on_pairs():
    assert {"paprika", "shinkai"} <= set(TRAINED_STYLES)


@pytest.mark.parametrize("name", TRAINED_STYLES)
def test_builtin_trained_style_sidecar(name):
    pt = PAPRIKA.with_name(f"{name}.pt")
    meta = json.loads(pt.with_suffix(".json").read_text())
    for key in ("name", "architecture", "source", "license", "training_steps", "quality", "sha256"):
        assert key in meta, key
    assert meta["name"] == name
    assert meta["architecture"] == weights.ARCHITECTURE
    assert isinstance(meta["license"], str) and meta["license"].strip()
    assert isinstance(meta["source"], str) and meta["source"].strip(), "sidecar 'source' must say where it comes from"
    assert isinstance(meta["training_steps"], int) and meta["training_steps"] > 0
    for key in ("psnr_student", "psnr_photo", "psnr_grade"):
        assert isinstance(meta["quality"][key], (int, float)), key
        assert 5.0 < meta["quality"][key] < 60.0, key
    assert meta["quality"]["psnr_student"] > meta["quality"]["psnr_grade"]  # more than a recolouring
    assert not set(meta["quality"]["val_pairs"]) & set(meta["recipe"]["train_pairs"])
    assert meta["sha256"] == sha256(pt)
    if meta.get("width", 1.0) == 1.0 and meta.get("blocks", 4) == 4:
        assert meta["parameters"] == OFFICIAL_PARAMETERS + (SKIP_PARAMETERS if meta.get("skip") else 0)
    assert bool(getattr(torch.jit.load(str(pt)), "skip", False)) == bool(meta.get("skip"))


def test_registry_lists_and_resolves_paprika():
    styles = {s.name: s for s in weights.list_styles()}
    assert "paprika" in styles
    assert styles["paprika"].origin == "built-in"
    path, meta = weights.resolve("paprika")
    assert path == PAPRIKA.resolve() or path == PAPRIKA
    assert meta["name"] == "paprika"


def test_unknown_style_name_lists_the_known_ones():
    with pytest.raises(StyleNotFoundError, match=r"no-such-style.*paprika"):
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
        engine = Engine("tinyuser", max_side=32, precision="fp32")
        assert engine.style == "tinyuser"
        rc, out, _ = cli("weights", "list")
        assert rc == 0 and "tinyuser" in out and "paprika" in out
    finally:
        for suffix in (".pt", ".json"):
            (weights.user_styles_dir() / f"tinyuser{suffix}").unlink(missing_ok=True)


def test_builtin_lite_style_was_distilled_from_the_shipped_full_style():
    lite = PAPRIKA.with_name("paprika-lite.pt")
    meta = json.loads(lite.with_suffix(".json").read_text())
    full = json.loads(PAPRIKA.with_suffix(".json").read_text())
    assert meta["sha256"] == sha256(lite)
    assert meta["quality"]["teacher"] == "paprika"
    assert meta["quality"]["teacher_sha256"] == full["sha256"], "re-distil paprika-lite after changing paprika"
    assert 20.0 < meta["quality"]["psnr_vs_teacher"] < 60.0
    assert meta["recommended_max_side"] < full["recommended_max_side"]
    assert meta["parameters"] < OFFICIAL_PARAMETERS / 3
    assert Engine("paprika-lite").max_side == meta["recommended_max_side"]
