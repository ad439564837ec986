"""Starting a deeper student from a shallower style's weights (stream.deepen, train._load_init)."""
import pytest
import torch

from stream.deepen import blocks_of, deepened
from stream.model import Generator
from stream.train import _load_init


def _trained(blocks: int, norm: str = "layer", width: float = 0.25) -> Generator:
    """A generator whose every parameter is random (so no block is the identity by accident)."""
    torch.manual_seed(blocks)
    model = Generator(width, blocks, True, "asymmetric", norm=norm)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return model.eval()


@pytest.mark.parametrize("norm", ["layer", "affine", "instance"])
def test_a_deepened_generator_computes_what_the_shallow_one_did(norm):
    shallow = _trained(2, norm)
    deep = Generator(0.25, 5, True, "asymmetric", norm=norm).eval()
    _load_init(deep, shallow.state_dict(), True)
    x = torch.rand(1, 3, 40, 56) * 2 - 1
    with torch.no_grad():
        want, got = shallow(x), deep(x)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    # and the new blocks are not dead: a step of training changes the output through their zeroed gains
    deep.train()
    loss = (deep(x) - 0.5).square().mean()
    loss.backward()
    assert deep.block_c[4].layers[3].weight.grad.abs().sum() > 0
    assert blocks_of(deep.state_dict()) == 5


def test_deepening_keeps_the_old_blocks_and_moves_the_layer_after_them():
    shallow = _trained(3).state_dict()
    out = deepened(shallow, Generator(0.25, 4, True, "asymmetric"))
    assert torch.equal(out["block_c.3.layers.2.weight"], shallow["block_c.3.layers.2.weight"])
    assert torch.equal(out["block_c.5.1.weight"], shallow["block_c.4.1.weight"])
    assert not out["block_c.4.layers.3.weight"].any() and not out["block_c.4.layers.3.bias"].any()
    assert out["block_c.4.layers.0.1.weight"].abs().sum() > 0  # the rest of the new block is a fresh init


def test_deepening_refuses_what_it_cannot_keep_exactly():
    with pytest.raises(ValueError, match="2 or more blocks"):
        deepened(_trained(1).state_dict(), Generator(0.25, 4, True, "asymmetric"))
    with pytest.raises(ValueError, match="fewer than the model's 3"):
        deepened(_trained(3).state_dict(), Generator(0.25, 3, True, "asymmetric"))
    with pytest.raises(ValueError, match="keeps the width"):
        deepened(_trained(2, width=0.5).state_dict(), Generator(0.25, 4, True, "asymmetric"))
    with pytest.raises(RuntimeError, match="keeps the width"):
        _load_init(Generator(0.25, 4, True, "asymmetric"), _trained(2, width=0.5).state_dict(), True)
