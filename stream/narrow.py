"""Start a narrower generator from a wider one's weights: keep each layer's most important channels.

A student of width 0.75 started from a trained width-1 style (``python -m stream.distill --init hayao
--width 0.75``) begins close to it instead of from noise. Every layer's output channels form a group
with the next layer's input channels (the residual stream of the inverted residual blocks is one
group across all of them, because they add into it); a group keeps the channels whose GroupNorm
gains (``|weight|``, summed over the norms that scale that group, each divided by its mean) are
largest, in their original order, and every convolution, bias and norm is sliced to match. The
result is what the narrow network computes with those channels alone: not the wide network's output
(every single-group GroupNorm now averages over fewer channels), so it is a start for training, not
a style.
"""
from __future__ import annotations

from typing import Callable

import torch

from .model import Generator

RGB = "rgb"  # the picture's channels, never narrowed


def _layers(blocks: int) -> list[tuple[str, str | None, str, str]]:
    """(convolution key, its norm's key or None, input group, output group) of every convolution of a
    :class:`stream.model.Generator` with ``blocks`` inverted residual blocks, in order. A depthwise
    convolution's input group is its output group."""
    rows = [("block_a.0.1", "block_a.0.2", RGB, "a0"), ("block_a.1.1", "block_a.1.2", "a0", "a1"),
            ("block_a.2.1", "block_a.2.2", "a1", "a2"), ("block_b.0.1", "block_b.0.2", "a2", "b0"),
            ("block_b.1.1", "block_b.1.2", "b0", "b1"), ("block_c.0.1", "block_c.0.2", "b1", "c0")]
    stream = "c0"
    for i in range(blocks):
        p = f"block_c.{i + 1}.layers"
        rows += [(f"{p}.0.1", f"{p}.0.2", stream, f"h{i}"), (f"{p}.1.1", f"{p}.1.2", f"h{i}", f"h{i}"),
                 (f"{p}.2", f"{p}.3", f"h{i}", "stream")]
        stream = "stream"
    rows += [(f"block_c.{blocks + 1}.1", f"block_c.{blocks + 1}.2", stream, "c1"),
             ("block_d.0.1", "block_d.0.2", "c1", "d0"), ("block_d.1.1", "block_d.1.2", "d0", "d1"),
             ("block_e.0.1", "block_e.0.2", "d1", "e0"), ("block_e.1.1", "block_e.1.2", "e0", "e1"),
             ("block_e.2.1", "block_e.2.2", "e1", "e2"), ("out_layer.0", None, "e2", RGB)]
    return rows


def importance(state: dict, rows: list[tuple[str, str | None, str, str]]) -> dict[str, torch.Tensor]:
    """Group -> each channel's importance: its GroupNorm gains (``|weight|``), each divided by its norm's
    mean gain, summed over the norms that scale the group."""
    out: dict[str, torch.Tensor] = {}
    for _, norm, _, group in rows:
        if norm is not None:
            gain = state[f"{norm}.weight"].abs().float()
            out[group] = out.get(group, 0) + gain / gain.mean().clamp_min(1e-12)
    return out


def group_sizes(state: dict, model: Generator) -> tuple[list[tuple[str, str | None, str, str]], dict[str, int],
                                                         dict[str, int]]:
    """(the layer rows of ``model``, each group's channel count in ``state``, the same in ``model``).
    Raises ValueError when ``state`` is not a Generator with ``model``'s blocks."""
    rows = _layers(model.blocks)
    target = model.state_dict()
    try:
        theirs = {out: state[f"{conv}.weight"].shape[0] for conv, _, _, out in rows if out != RGB}
    except KeyError as e:
        raise ValueError(f"not a generator with {model.blocks} blocks: no {e.args[0]}") from None
    return rows, theirs, {out: target[f"{conv}.weight"].shape[0] for conv, _, _, out in rows if out != RGB}


def _kept(state: dict, rows: list[tuple[str, str | None, str, str]], sizes: dict[str, int]) -> dict[str, torch.Tensor]:
    """Group -> the sorted indices of the ``sizes[group]`` channels with the largest summed relative gains."""
    return {g: torch.sort(torch.topk(imp, sizes[g]).indices).values for g, imp in importance(state, rows).items()}


def narrowed(state: dict, model: Generator) -> dict:
    """``state`` (a wider Generator's state_dict, same ``blocks``) sliced to ``model``'s channel counts.

    Raises ValueError when ``state`` is not a Generator of the same depth at least as wide in every
    layer. Keys outside the convolutions and norms (``photo_grade``) pass through unchanged.
    """
    rows, wide, sizes = group_sizes(state, model)
    if any(wide[g] < n for g, n in sizes.items()):
        raise ValueError("the weights are narrower than the model in some layer; only narrowing is possible")
    return remapped(state, model, rows, _kept(state, rows, sizes), lambda w, cols: w[:, cols], "narrowed")


def remapped(state: dict, model: Generator, rows: list[tuple[str, str | None, str, str]],
             index: dict[str, torch.Tensor], read: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
             verb: str) -> dict:
    """``state`` with each group's channels taken from ``index[group]`` (indices into its channels): every
    convolution's output rows, bias and norm picked by its group's index, and its input columns by
    ``read(weight, index of its input group)`` (not for a depthwise convolution, whose input is its
    output). Raises ValueError (naming the tensor, ``verb`` saying how it was made) when a result does not
    fit ``model``."""
    target = model.state_dict()
    out = dict(state)
    for conv, norm, src, dst in rows:
        w = state[f"{conv}.weight"]
        if dst != RGB:
            w = w[index[dst]]
        if src != RGB and src != dst:
            w = read(w, index[src])
        out[f"{conv}.weight"] = w.to(state[f"{conv}.weight"].dtype).contiguous()
        if f"{conv}.bias" in state:
            bias = state[f"{conv}.bias"]
            out[f"{conv}.bias"] = (bias[index[dst]] if dst != RGB else bias).clone()
        if norm is not None:
            for p in ("weight", "bias"):
                out[f"{norm}.{p}"] = state[f"{norm}.{p}"][index[dst]].clone()
    bad = [k for k, v in target.items() if k in out and out[k].shape != v.shape]
    if bad:
        raise ValueError(f"{verb} {bad[0]} is {tuple(out[bad[0]].shape)}, "
                         f"the model wants {tuple(target[bad[0]].shape)}")
    return out
