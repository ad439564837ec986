"""Exact rewrites of the generator's forward pass, timed against the one the engine runs.

    python bench/variants.py [--style shinkai] [--size 512x288] [--repeat 8]

Each variant runs in a fresh interpreter (so its peak RSS is its own) and prints one JSON line:
  reference  the style's TorchScript module as the engine runs it: bf16 weights, channels_last
  padfree    each stride-1 reflect-padded convolution as a zero-padded one plus four thin convolutions
             that redo the borders: no padded copy of any activation
  rows       both upsamplings and the convolutions after them computed band by band (BAND_ROWS rows),
             so the full-resolution 128-channel tensor and its padded copy never exist
  inductor   the reference as eager modules compiled by torch.compile (Inductor, with ``freezing``:
             weights folded and prepacked for oneDNN); the first call compiles and is not timed
  batch4     the reference on 4 frames at once (what batching a file job's frames would do); times
             are per frame
``activation_mb`` is peak RSS minus RSS before the first call; ``max_abs_diff`` compares the output
with the reference's on the same input (outputs are in [-1, 1]; in bf16 the rows variant rounds its
separable upsampling once more, so expect a few bf16 steps of difference there, ~1e-6 in fp32).
"""
from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream import weights  # noqa: E402
from stream.engine import keep_activation_memory  # noqa: E402
from stream.model import Generator  # noqa: E402
from stream.pipeline import current_rss_mb, peak_rss_mb  # noqa: E402

BAND_ROWS = 32  # output rows per band in the "rows" variant
VARIANTS = ("reference", "padfree", "rows", "inductor", "batch4")
BATCH = 4  # frames per call in the "batch4" variant


class PadFreeConv(nn.Module):
    """conv(reflect_pad(x, p)) as a zero-padded conv whose p-pixel borders are recomputed."""

    def __init__(self, conv: nn.Conv2d, p: int):
        super().__init__()
        self.p, self.weight, self.bias, self.groups = p, conv.weight, conv.bias, conv.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, w, b, g = self.p, self.weight, self.bias, self.groups
        h, wd = x.shape[-2], x.shape[-1]
        y = F.conv2d(x, w, b, padding=p, groups=g)
        y[:, :, :p] = F.conv2d(F.pad(x[:, :, :2 * p], (p, p, p, 0), mode="reflect"), w, b, groups=g)
        y[:, :, h - p:] = F.conv2d(F.pad(x[:, :, h - 2 * p:], (p, p, 0, p), mode="reflect"), w, b, groups=g)
        y[:, :, p:h - p, :p] = F.conv2d(F.pad(x[:, :, :, :2 * p], (p, 0, 0, 0), mode="reflect"), w, b, groups=g)
        y[:, :, p:h - p, wd - p:] = F.conv2d(F.pad(x[:, :, :, wd - 2 * p:], (0, p, 0, 0), mode="reflect"),
                                            w, b, groups=g)
        return y


def padfree(model: nn.Module) -> nn.Module:
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential) and len(child) == 4 and isinstance(child[0], nn.ReflectionPad2d):
            pad = child[0].padding
            if len(set(pad)) == 1 and pad[0] > 0 and child[1].stride == (1, 1):
                child[0], child[1] = nn.Identity(), PadFreeConv(child[1], pad[0])
                continue
        padfree(child)
    return model


def _conv_rows(src: torch.Tensor, layer: nn.Sequential, width: int, upsample_to: int = 0) -> torch.Tensor:
    """One pad-conv-norm-lrelu layer, band by band; ``upsample_to`` > 0 first upsamples ``src``
    (bilinear, align_corners) to that many rows and ``width`` columns, one band at a time."""
    p, conv, norm = layer[0].padding[0], layer[1], layer[2]
    rows = upsample_to or src.shape[2]
    if upsample_to:  # vertical pass whole (half the width), horizontal pass per band
        src = F.interpolate(src, size=(rows, src.shape[3]), mode="bilinear", align_corners=True)
    out = None
    for top in range(0, rows, BAND_ROWS):
        bottom = min(rows, top + BAND_ROWS)
        lo, hi = max(0, top - p), min(rows, bottom + p)
        band = src[:, :, lo:hi]
        if upsample_to:
            band = F.interpolate(band, size=(hi - lo, width), mode="bilinear", align_corners=True)
        band = F.pad(band, (p, p, p - (top - lo), p - (hi - bottom)), mode="reflect")
        y = conv(band)
        if out is None:
            out = torch.empty((1, y.shape[1], rows, width), dtype=y.dtype).contiguous(
                memory_format=torch.channels_last)
        out[:, :, top:bottom] = y
    return F.leaky_relu_(norm(out), 0.2)


class RowsGenerator(nn.Module):
    def __init__(self, g: Generator):
        super().__init__()
        self.g = g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.g
        a = g.block_a(x)
        out = g.block_c(g.block_b(a))
        for i, layer in enumerate(g.block_d):
            out = _conv_rows(out, layer, a.shape[3], a.shape[2] if i == 0 else 0)
        del a
        for i, layer in enumerate(g.block_e):
            out = _conv_rows(out, layer, x.shape[3], x.shape[2] if i == 0 else 0)
        return g.head(out, x)


def child(variant: str, style: str, width: int, height: int, repeat: int, dtype: torch.dtype) -> dict:
    keep_activation_memory()
    scripted = weights.load_model(style)
    eager = weights.eager_generator(scripted)
    prep = lambda m: m.to(dtype).to(memory_format=torch.channels_last).eval()  # noqa: E731
    reference = prep(scripted)
    if variant == "inductor":
        from torch._inductor import config as inductor_config
        inductor_config.freezing = True
        model = torch.compile(prep(copy.deepcopy(eager)))
    else:
        model = {"reference": reference, "padfree": prep(padfree(copy.deepcopy(eager))),
                 "rows": prep(RowsGenerator(eager)), "batch4": reference}[variant]
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand((1, 3, height, width), generator=gen) * 2 - 1).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    frames = BATCH if variant == "batch4" else 1
    batch = x.repeat(frames, 1, 1, 1).contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode():
        before = current_rss_mb()
        out = model(batch)[:1].float()
        for _ in range(repeat):
            t0 = time.perf_counter()
            model(batch)
            times.append((time.perf_counter() - t0) / frames)
        activation = peak_rss_mb() - before
        diff = (out - reference(x).float()).abs().max().item()
    times.sort()
    return {"variant": variant, "size": f"{width}x{height}", "ms_median": round(1000 * times[len(times) // 2], 1),
            "ms_min": round(1000 * times[0], 1), "activation_mb": round(activation, 1),
            "max_abs_diff": round(diff, 6), "precision": str(dtype).removeprefix("torch."),
            "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--style", default="shinkai")
    p.add_argument("--size", default="512x288", help="WIDTHxHEIGHT at inference (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=8, help="timed calls per variant (default: %(default)s)")
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16", help="(default: %(default)s)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated (default: %(default)s)")
    p.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    if args.one:
        dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.precision]
        print(json.dumps(child(args.one, args.style, width, height, args.repeat, dtype)))
        return 0
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        p.error(f"--variants: unknown {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    for variant in args.variants.split(","):
        cmd = [sys.executable, __file__, "--one", variant, "--style", args.style, "--size", args.size,
               "--repeat", str(args.repeat), "--precision", args.precision]
        print(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
