"""Start a deeper generator from a shallower one's weights: the new blocks start as the identity.

A trained style with 4 inverted residual blocks can seed a student with more of them (``python -m
stream.distill --init hayao --blocks 8``): the blocks it has keep their weights, in order, and each
new block is appended after them with its last norm's gain and bias at zero, so that it adds nothing
to the residual stream it sits on. The deeper network then computes exactly what the shallower one did
(:func:`deepened`), and training starts from the style instead of from noise, with more capacity to
spend. Gradients reach a new block through its zeroed gain first (the zero-initialised residual of
Goyal et al., 2017).
"""
from __future__ import annotations

import re

import torch

from .model import Generator

_BLOCK = re.compile(r"^block_c\.(\d+)\.layers\.")


def blocks_of(state: dict) -> int:
    """How many inverted residual blocks the Generator state_dict ``state`` has."""
    found = {int(m.group(1)) for k in state if (m := _BLOCK.match(k))}
    return len(found)


def deepened(state: dict, model: Generator) -> dict:
    """``state`` (a Generator's state_dict of the same width with fewer blocks) laid out for ``model``:
    its blocks kept as ``block_c.1..n``, ``model``'s own freshly initialised blocks after them with
    their last norm zeroed (the identity), and the layer after the blocks moved to its new index.

    Raises ValueError when ``state`` has no residual block to extend (fewer than 2 blocks: the first
    block widens the stream and has no residual), as many blocks as ``model`` or more, or other shapes.
    """
    have, want = blocks_of(state), model.blocks
    if have < 2:
        raise ValueError(f"only weights with 2 or more blocks can be deepened, not {have}")
    if have >= want:
        raise ValueError(f"the weights have {have} blocks; deepening needs fewer than the model's {want}")
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    after_old, after_new = f"block_c.{have + 1}.", f"block_c.{want + 1}."
    for key, value in state.items():
        out[after_new + key[len(after_old):] if key.startswith(after_old) else key] = value
    for i in range(have + 1, want + 1):
        prefix = f"block_c.{i}.layers."
        for key, value in target.items():
            if key.startswith(prefix):
                out[key] = value.clone()
        for p in ("weight", "bias"):
            out[f"{prefix}3.{p}"].zero_()
    bad = [k for k, v in target.items() if k in out and out[k].shape != v.shape]
    if bad:
        raise ValueError(f"deepening {have} blocks to {want} keeps the width, but {bad[0]} is "
                         f"{tuple(out[bad[0]].shape)} and the model wants {tuple(target[bad[0]].shape)}")
    return out
