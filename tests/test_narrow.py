"""Starting a narrower student from a wider style's weights (stream.narrow, train._load_init)."""
import pytest
import torch

from stream.model import Generator
from stream.narrow import narrowed
from stream.train import _load_init


def _wide(blocks: int = 2) -> Generator:
    torch.manual_seed(3)
    model = Generator(1.0, blocks, False, "asymmetric")
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    return model


def test_each_group_keeps_its_largest_gains_in_order_and_every_layer_is_sliced_to_match():
    wide = _wide()
    state = wide.state_dict()
    favoured = torch.tensor([1, 4, 9, 10, 15, 20, 30, 31, 2, 7, 12, 13, 18, 25, 27, 29])  # 16 of block_a.0's 32
    gains = torch.full((32,), 0.1)
    gains[favoured] = 5.0
    state["block_a.0.2.weight"] = gains
    narrow = Generator(0.5, 2, False, "asymmetric")
    out = narrowed(state, narrow)
    kept = torch.sort(favoured).values
    assert torch.equal(out["block_a.0.1.weight"], state["block_a.0.1.weight"][kept])
    assert torch.equal(out["block_a.0.2.bias"], state["block_a.0.2.bias"][kept])
    # the next convolution reads exactly those channels, for its own most important outputs
    next_kept = torch.sort(torch.topk(state["block_a.1.2.weight"].abs(), 32).indices).values
    assert torch.equal(out["block_a.1.1.weight"], state["block_a.1.1.weight"][next_kept][:, kept])
    narrow.load_state_dict(out, strict=True)


def test_the_residual_stream_keeps_one_channel_set_across_its_blocks():
    state = _wide(blocks=3).state_dict()
    even = torch.arange(0, 256, 2)  # the stream's favoured channels, in every block that adds into it
    first = torch.arange(256)  # each expansion's favoured hidden channels
    for b in (1, 2, 3):
        gains = torch.full((256,), 0.1)
        gains[even] = 5.0
        state[f"block_c.{b}.layers.3.weight"] = gains
        for norm in ("0.2", "1.2"):
            hidden = state[f"block_c.{b}.layers.{norm}.weight"].shape[0]
            state[f"block_c.{b}.layers.{norm}.weight"] = torch.where(torch.arange(hidden) < hidden // 2, 5.0, 0.1)
    out = narrowed(state, Generator(0.5, 3, False, "asymmetric"))
    assert torch.equal(out["block_c.2.layers.2.weight"], state["block_c.2.layers.2.weight"][even][:, first])
    assert torch.equal(out["block_c.3.layers.0.1.weight"], state["block_c.3.layers.0.1.weight"][first][:, even])
    assert torch.equal(out["block_c.4.1.weight"][:, :, 1, 1], state["block_c.4.1.weight"][:, even, 1, 1][
        torch.sort(torch.topk(state["block_c.4.2.weight"].abs(), 64).indices).values])
    for b in (1, 2, 3):
        assert torch.equal(out[f"block_c.{b}.layers.3.bias"], state[f"block_c.{b}.layers.3.bias"][even])


def test_load_init_narrows_a_wider_style_and_refuses_another_depth():
    wide = _wide()
    narrow = Generator(0.75, 2, False, "asymmetric")
    _load_init(narrow, wide.state_dict(), False)
    assert narrow.block_e[2][1].weight.shape == (24, 48, 7, 7)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.isfinite(narrow(x)).all()
    with pytest.raises(RuntimeError, match="blocks"):
        _load_init(Generator(0.5, 4, False, "asymmetric"), wide.state_dict(), False)
