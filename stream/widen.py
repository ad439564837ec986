"""Start a wider generator from a narrower one's weights: each layer's channels copied, the copies sharing
the load.

A ``shinkai`` of width 0.75 started from the trained half-width one (``python -m stream.distill --init
shinkai --width 0.75``) begins where it stands instead of from noise. The channel groups are those of
:mod:`stream.narrow` (the residual stream is one group across every block). A group that grows keeps
all its channels and adds copies of its most important ones (the same measure as narrowing: summed
relative GroupNorm gains), so a channel may appear ``k`` times: every convolution, bias and norm of the
group's producer is copied with it, and the next convolution reads each copy with ``1 / k`` of the
original weight. Since a copy holds the same values as its original, a single-group GroupNorm sees the
same mean and variance whenever every channel is copied equally often: widening to exactly 2x (or any
whole multiple) computes the same function within float rounding. In between, the copied channels
weigh more in each norm's statistics, so the start is close to the narrow network, not equal to it.

Copies that stayed equal would get equal gradients and stay equal for ever. The weights that read them
are therefore split unevenly (``1 / k`` plus a small zero-sum perturbation, :data:`SPLIT_NOISE` of the
layer's weight scale), which changes nothing the network computes but lets the copies learn apart.
"""
from __future__ import annotations

import torch

from .model import Generator
from .narrow import RGB, _layers

SPLIT_NOISE = 0.05  # standard deviation of the uneven split, relative to the reading layer's weight std


def _copies(state: dict, rows: list[tuple[str, str | None, str, str]], old: dict[str, int],
            new: dict[str, int]) -> dict[str, torch.Tensor]:
    """Group -> for each of its ``new[group]`` channels, the index of the narrow channel it copies: all of
    them in order, then the most important ones again, as often as it takes."""
    importance: dict[str, torch.Tensor] = {}
    for _, norm, _, group in rows:
        if norm is not None:
            gain = state[f"{norm}.weight"].abs().float()
            importance[group] = importance.get(group, 0) + gain / gain.mean().clamp_min(1e-12)
    out = {}
    for group, n in old.items():
        ranked = torch.argsort(importance[group], descending=True) if group in importance else torch.arange(n)
        extra = ranked.repeat((new[group] - n) // n + 1)[: new[group] - n]
        out[group] = torch.cat([torch.arange(n), extra])
    return out


def _split(w: torch.Tensor, copies: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The input columns of ``w`` (out x in x kh x kw) for the widened input ``copies``: each narrow
    column divided among its copies, unevenly but summing to it exactly."""
    counts = torch.bincount(copies, minlength=w.shape[1]).to(w.dtype)
    cols = w[:, copies] / counts[copies].view(1, -1, 1, 1)
    noise = torch.randn(cols.shape, generator=gen, dtype=w.dtype) * (SPLIT_NOISE * float(w.std()))
    mean = torch.zeros_like(w).index_add_(1, copies, noise) / counts.view(1, -1, 1, 1)
    noise = noise - mean[:, copies]  # zero-sum over the copies of each column
    return cols + noise * (counts[copies] > 1).to(w.dtype).view(1, -1, 1, 1)


def widened(state: dict, model: Generator, seed: int = 0) -> dict:
    """``state`` (a narrower Generator's state_dict, same ``blocks``) grown to ``model``'s channel counts.

    Raises ValueError when ``state`` is not a Generator of the same depth at most as wide in every
    layer. Keys outside the convolutions and norms (``photo_grade``) pass through unchanged.
    """
    target = model.state_dict()
    rows = _layers(model.blocks)
    try:
        new = {out: target[f"{conv}.weight"].shape[0] for conv, _, _, out in rows if out != RGB}
        old = {out: state[f"{conv}.weight"].shape[0] for conv, _, _, out in rows if out != RGB}
    except KeyError as e:
        raise ValueError(f"not a generator with {model.blocks} blocks: no {e.args[0]}") from None
    if any(old[g] > n for g, n in new.items()):
        raise ValueError("the weights are wider than the model in some layer; only widening is possible here")
    copies = _copies(state, rows, old, new)
    gen = torch.Generator().manual_seed(seed)
    out = dict(state)
    for conv, norm, src, dst in rows:
        w = state[f"{conv}.weight"].float()
        depthwise = src == dst
        if dst != RGB:
            w = w[copies[dst]]
        if src != RGB and not depthwise:
            w = _split(w, copies[src], gen)
        out[f"{conv}.weight"] = w.to(state[f"{conv}.weight"].dtype).contiguous()
        if f"{conv}.bias" in state:
            bias = state[f"{conv}.bias"]
            out[f"{conv}.bias"] = (bias[copies[dst]] if dst != RGB else bias).clone()
        if norm is not None:
            for p in ("weight", "bias"):
                out[f"{norm}.{p}"] = state[f"{norm}.{p}"][copies[dst]].clone()
    bad = [k for k, v in target.items() if k in out and out[k].shape != v.shape]
    if bad:
        raise ValueError(f"widened {bad[0]} is {tuple(out[bad[0]].shape)}, "
                         f"the model wants {tuple(target[bad[0]].shape)}")
    return out
