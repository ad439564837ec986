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
from .narrow import group_sizes, importance, remapped

SPLIT_NOISE = 0.05  # standard deviation of the uneven split, relative to the reading layer's weight std


def _copies(state: dict, rows: list[tuple[str, str | None, str, str]], old: dict[str, int],
            new: dict[str, int]) -> dict[str, torch.Tensor]:
    """Group -> for each of its ``new[group]`` channels, the index of the narrow channel it copies: all of
    them in order, then the most important ones again, as often as it takes."""
    gains = importance(state, rows)
    out = {}
    for group, n in old.items():
        ranked = torch.argsort(gains[group], descending=True)  # every group but the picture's has a norm
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
    rows, old, new = group_sizes(state, model)
    if any(old[g] > n for g, n in new.items()):
        raise ValueError("the weights are wider than the model in some layer; only widening is possible here")
    gen = torch.Generator().manual_seed(seed)
    return remapped(state, model, rows, _copies(state, rows, old, new), lambda w, cols: _split(w.float(), cols, gen),
                    "widened")
