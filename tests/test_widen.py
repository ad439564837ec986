"""Starting a wider student from a narrower style's weights (stream.widen, train._load_init)."""
from pathlib import Path

import cv2
import pytest
import torch

from stream import weights
from stream.model import Generator
from stream.quality import psnr
from stream.sources import read_image
from stream.train import _load_init, to_image, to_tensor
from stream.widen import widened

SAMPLE = Path(__file__).resolve().parents[1] / "samples"


def _narrow(width: float = 0.5, blocks: int = 2, skip: bool = True) -> Generator:
    torch.manual_seed(5)
    model = Generator(width, blocks, skip, "asymmetric")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def test_twice_the_width_computes_the_same_function():
    narrow = _narrow()
    wide = Generator(1.0, 2, True, "asymmetric").eval()
    wide.load_state_dict(widened(narrow.state_dict(), wide), strict=True)
    x = torch.rand(1, 3, 80, 112) * 2 - 1
    with torch.no_grad():
        assert (narrow(x) - wide(x)).abs().max() < 1e-4


def test_copies_split_the_weight_that_reads_them_unevenly_and_exactly():
    state = _narrow().state_dict()
    state["block_a.0.2.weight"] = torch.linspace(2, 1, 16)  # ranked in order: channel j's copy is j + 16
    out = widened(state, Generator(1.0, 2, True, "asymmetric"))
    conv = "block_a.1.1.weight"  # reads block_a.0's 16 channels, now 32
    w, wide = state[conv], out[conv]
    assert torch.allclose(wide[:32, :16] + wide[:32, 16:], w, atol=1e-6)
    assert (wide[:, :16] - wide[:, 16:]).abs().max() > 1e-3  # the copies can learn apart
    assert torch.equal(out["block_a.0.1.weight"][16:], state["block_a.0.1.weight"])  # the producer is copied
    assert torch.equal(out["block_a.0.2.bias"][16:], state["block_a.0.2.bias"])


def test_a_partial_widening_copies_each_groups_most_important_channels():
    state = _narrow().state_dict()
    favoured = torch.tensor([3, 5, 6, 9, 10, 12, 14, 15])  # 8 of block_a.0's 16: the ones copied to reach 24
    gains = torch.full((16,), 0.1)
    gains[favoured] = torch.linspace(5, 4, 8)
    state["block_a.0.2.weight"] = gains
    out = widened(state, Generator(0.75, 2, True, "asymmetric"))
    assert torch.equal(out["block_a.0.1.weight"][:16], state["block_a.0.1.weight"])
    assert torch.equal(out["block_a.0.1.weight"][16:], state["block_a.0.1.weight"][favoured])
    Generator(0.75, 2, True, "asymmetric").load_state_dict(out, strict=True)


def test_load_init_widens_a_narrower_style_and_refuses_a_mixed_one():
    model = Generator(0.75, 2, True, "asymmetric")
    _load_init(model, _narrow().state_dict(), True)
    assert model.block_e[2][1].weight.shape == (24, 48, 7, 7)
    mixed = _narrow().state_dict()
    mixed["block_d.0.1.weight"] = torch.zeros(128, 64, 3, 3)  # one layer wider than a 0.75 model's 96
    with pytest.raises(RuntimeError, match="wider than the model"):
        _load_init(Generator(0.75, 2, True, "asymmetric"), mixed, True)
    partial = {k: v for k, v in _narrow().state_dict().items() if not k.startswith("block_a.0.")}
    with pytest.raises(RuntimeError, match="not a generator"):  # one error line, whichever way it would go
        _load_init(Generator(0.75, 2, True, "asymmetric"), partial, True)


def test_a_shipped_half_width_style_widened_to_three_quarters_paints_almost_as_before():
    style = weights.resolve("shinkai")
    narrow = weights.eager_generator(style).float().eval()
    wide = Generator(0.75, narrow.blocks, narrow.skip, narrow.upsample).eval()
    _load_init(wide, narrow.state_dict(), narrow.skip)
    rgb = cv2.resize(read_image(SAMPLE / "astronaut.jpg"), (256, 256), interpolation=cv2.INTER_AREA)
    with torch.no_grad():
        a, b = (to_image(m(to_tensor(rgb).unsqueeze(0))[0]) for m in (narrow, wide))
    assert psnr(a, b) > 35  # the copied channels weigh more in each norm's statistics: close, not equal
