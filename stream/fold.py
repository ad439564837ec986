"""Start a generator with other norms from a trained single-group one: statistics fixed at an average.

Each ``GroupNorm(1, C)`` computes ``(x_c - mean) / std * weight_c + bias_c`` with one mean and standard
deviation per picture. Measured over pictures like the training ones (``samples``), those numbers, and
each channel's own (``mean_c``, ``std_c``), vary little from picture to picture, so fixing them at their
averages gives the other norms' parameters that paint typical pictures much as the trained network does:

* ``norm="affine"`` (no statistics): ``x_c * weight_c / std + (bias_c - weight_c * mean / std)``;
* ``norm="instance"`` (each channel over the picture): since ``x_c - mean = (x_c - mean_c) + (mean_c -
  mean)``, the scale ``weight_c * std_c / std`` and the shift ``bias_c + weight_c * (mean_c - mean) / std``.

It is a start for training (``python -m stream.distill --norm affine --init cartoon``), not a style: a
picture whose statistics are far from the average is painted differently.
"""
from __future__ import annotations

import torch
from torch import nn

from .model import Generator

FOLDS = ("affine", "instance")


def norm_statistics(model: Generator, samples: list[torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Norm key -> the averages over ``samples`` (NCHW pictures in [-1, 1], run one by one in fp32) of the
    input of each single-group norm of ``model``: ``mean`` and ``std`` over the whole picture (scalars),
    ``mean_c`` and ``std_c`` per channel (the norm's eps added to each variance)."""
    sums: dict[str, dict[str, torch.Tensor]] = {}
    hooks = []

    def record(name: str):
        def hook(module: nn.GroupNorm, args: tuple) -> None:
            x = args[0].float()
            var, mean = torch.var_mean(x, dim=(1, 2, 3), correction=0)
            var_c, mean_c = torch.var_mean(x, dim=(2, 3), correction=0)
            seen = {"mean": mean.sum(), "std": (var + module.eps).sqrt().sum(),
                    "mean_c": mean_c.sum(dim=0), "std_c": (var_c + module.eps).sqrt().sum(dim=0)}
            acc = sums.setdefault(name, {k: torch.zeros_like(v) for k, v in seen.items()})
            for k, v in seen.items():
                acc[k] += v
        return hook

    for name, module in model.named_modules():
        if isinstance(module, nn.GroupNorm):
            if module.num_groups != 1:
                raise ValueError("only a single-group (norm='layer') generator folds into other norms")
            hooks.append(module.register_forward_pre_hook(record(name)))
    try:
        with torch.no_grad():
            model.eval()
            for x in samples:
                model(x.float())
    finally:
        for h in hooks:
            h.remove()
    n = sum(x.shape[0] for x in samples)
    if not n:
        raise ValueError("no samples to measure the norms on")
    return {name: {k: v / n for k, v in acc.items()} for name, acc in sums.items()}


def folded(model: Generator, samples: list[torch.Tensor], norm: str = "affine") -> dict[str, torch.Tensor]:
    """The state_dict of ``model`` (single-group norms) for a Generator of the same shape with ``norm``
    (one of :data:`FOLDS`): every norm's statistics fixed at their average over ``samples``."""
    if norm not in FOLDS:
        raise ValueError(f"a single-group generator folds into {' or '.join(FOLDS)} norms, not {norm!r}")
    stats = norm_statistics(model, samples)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name, s in stats.items():
        weight, bias = state[f"{name}.weight"], state[f"{name}.bias"]
        if norm == "affine":
            state[f"{name}.weight"] = weight / s["std"]
            state[f"{name}.bias"] = bias - weight * (s["mean"] / s["std"])
        else:
            state[f"{name}.weight"] = weight * s["std_c"] / s["std"]
            state[f"{name}.bias"] = bias + weight * (s["mean_c"] - s["mean"]) / s["std"]
    return state
