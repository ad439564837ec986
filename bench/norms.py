"""Single-group GroupNorm of a channels-last map, as torch computes it and packed to 32+ channels.

    python bench/norms.py [--shapes 8x512,16x256,12x512,24x256,32x128] [--repeats 30]

``CxS`` is C channels on an S x S map. One JSON line per shape and path: ``bf16`` is ``F.group_norm`` against
:class:`stream.model.PackedGroupNorm` (the CPU's bf16 engine), ``int8`` is ``quantized.batch_norm2d``
against :func:`stream.quant._batch_norm` (the INT8 engine's norm), each with the median ms of ``--repeats``
calls and the packed path's largest difference from the plain one (bf16: relative to the largest output,
bf16 rounding; int8: quantized steps, 0: the same bytes). ``ONEDNN_MAX_CPU_ISA``/``ATEN_CPU_CAPABILITY`` limit both, as for the engine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from stream import quant
from stream.model import PackedGroupNorm, pack_factor


def _ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="8x512,16x256,12x512,24x256,32x128", help="CxS, comma-separated")
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    for shape in args.shapes.split(","):
        c, side = (int(v) for v in shape.lower().split("x"))
        x = torch.randn(1, c, side, side).contiguous(memory_format=torch.channels_last)
        norm = torch.nn.GroupNorm(1, c)
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.3, 0.3)
        low = x.bfloat16()
        wf, bf = norm.weight.detach().clone(), norm.bias.detach().clone()
        w, b = wf.bfloat16(), bf.bfloat16()
        packed = PackedGroupNorm(norm, pack_factor(c)).bfloat16()  # shares (and converts) norm's parameters
        with torch.inference_mode():
            plain_ms = _ms(lambda: F.group_norm(low, 1, w, b), args.repeats)
            packed_ms = _ms(lambda: packed(low), args.repeats)
            ref = F.group_norm(low, 1, w, b).float()
            diff = ((packed(low).float() - ref).abs().max() / ref.abs().max()).item()
        print(json.dumps({"channels": c, "side": side, "path": "bf16", "plain_ms": round(plain_ms, 3),
                          "packed_ms": round(packed_ms, 3), "max_diff_rel": round(diff, 4)}), flush=True)
        q = torch.quantize_per_tensor(x, 0.05, 128, torch.quint8)
        mean, var = torch.randn(c) * 0.1, torch.rand(c) + 0.5

        def plain_q():
            return torch.ops.quantized.batch_norm2d(q, wf, bf, mean, var, 0.0, 0.04, 128)

        def packed_q():
            return quant._batch_norm(q, wf, bf, mean, var, 0.04, 128)

        steps = (packed_q().int_repr().int() - plain_q().int_repr().int()).abs().max().item()
        print(json.dumps({"channels": c, "side": side, "path": "int8", "plain_ms": round(_ms(plain_q, args.repeats), 3),
                          "packed_ms": round(_ms(packed_q, args.repeats), 3), "max_diff_steps": steps}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
