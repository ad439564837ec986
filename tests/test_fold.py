"""A generator without norms (norm="affine") and how one starts from a single-group style (stream.fold)."""
from __future__ import annotations

import copy

import pytest
import torch

from stream.fold import folded
from stream.model import ChannelAffine, Generator, with_folded_affines


def _randomised(model: Generator, seed: int) -> Generator:
    """``model`` with every norm's scale and shift drawn at random (a trained style's are not 1 and 0), and
    its last convolution too (a ``skip`` generator starts it at zero, the photo)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.out_layer[0].weight.normal_(0.0, 0.2, generator=gen)
        for m in model.modules():
            if isinstance(m, (torch.nn.GroupNorm, ChannelAffine)):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) - 0.5)
    return model.eval()


def _picture(seed: int, h: int = 64, w: int = 96, brightness: float = 0.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(1, 3, h, w, generator=gen) * 1.4 - 0.7 + brightness).clamp(-1, 1)


@pytest.mark.parametrize("norm, local", [("affine", True), ("layer", False), ("instance", False)])
def test_only_a_norm_free_generator_paints_a_pixel_from_its_neighbourhood_alone(norm, local):
    torch.manual_seed(0)
    model = _randomised(Generator(0.25, 1, True, "align_corners", 1, 0.01, norm), 1)
    x = _picture(2, 64, 320)
    moved = x.clone()
    moved[:, :, :, :48] = -moved[:, :, :, :48]  # the left edge changes; the right 96 columns are 170+ px away
    with torch.no_grad():
        far = (model(x) - model(moved))[:, :, :, -96:].abs().max().item()
    assert (far < 1e-6) if local else (far > 1e-3)


@pytest.mark.parametrize("norm", ["affine", "instance"])
def test_norms_fixed_at_one_pictures_statistics_paint_that_picture_as_before_and_another_differently(norm):
    torch.manual_seed(3)
    layer = _randomised(Generator(0.25, 1, True), 4)
    x, darker = _picture(5), _picture(6, brightness=-0.4)
    other = Generator(0.25, 1, True, norm=norm).eval()
    other.load_state_dict(folded(layer, [x], norm))
    with torch.no_grad():
        torch.testing.assert_close(other(x), layer(x), atol=2e-4, rtol=0)
        assert (other(darker) - layer(darker)).abs().mean() > 1e-3  # its statistics are not the picture's


@pytest.mark.parametrize("norm", ["affine", "instance"])
def test_averaged_statistics_come_close_on_pictures_like_the_samples(norm):
    torch.manual_seed(7)
    layer = _randomised(Generator(0.25, 1, True), 8)
    samples = [_picture(s) for s in range(10, 30)]
    affine = Generator(0.25, 1, True, norm=norm).eval()
    affine.load_state_dict(folded(layer, samples, norm))
    naive = Generator(0.25, 1, True, norm=norm).eval()
    naive.load_state_dict(layer.state_dict())  # the same tensors, statistics as they fall
    x = _picture(99)
    with torch.no_grad():
        near, far = ((m(x) - layer(x)).abs().mean().item() for m in (affine, naive))
    assert near < 0.2 * far


def test_only_single_group_norms_fold():
    with pytest.raises(ValueError, match="single-group"):
        folded(Generator(0.25, 1, norm="instance"), [_picture(0)])
    with pytest.raises(ValueError, match="not 'layer'"):
        folded(Generator(0.25, 1), [_picture(0)], "layer")
    with pytest.raises(ValueError, match="no samples"):
        folded(Generator(0.25, 1), [])


def test_inference_folds_each_affine_into_its_convolution():
    torch.manual_seed(9)
    layer = _randomised(Generator(0.25, 1, True, "align_corners", 1, 0.01), 10)
    affine = Generator(0.25, 1, True, "align_corners", 1, 0.01, norm="affine").eval()
    affine.load_state_dict(folded(layer, [_picture(11)]))
    fast = with_folded_affines(copy.deepcopy(affine))
    assert not any(isinstance(m, ChannelAffine) for m in fast.modules())
    assert sum(isinstance(m, torch.nn.Identity) for m in fast.modules()) == sum(
        isinstance(m, ChannelAffine) for m in affine.modules())
    x = _picture(12)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), affine(x), atol=1e-4, rtol=0)
        torch.testing.assert_close(torch.jit.script(fast)(x), affine(x), atol=1e-4, rtol=0)
    single = Generator(0.25, 1)
    assert with_folded_affines(copy.deepcopy(single)).state_dict().keys() == single.state_dict().keys()
