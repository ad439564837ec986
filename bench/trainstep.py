"""Seconds a training step takes on this CPU: the whole batch in one pass against micro-batches.

    python bench/trainstep.py [--widths 1,0.75,0.5] [--tiles 192,288,384] [--batch 4] [--steps 3]

For each student width and tile size, one optimiser step of ``--batch`` random tiles through
``stream.train.Run`` (Adam, the same bf16 autocast as ``python -m stream.distill`` on CPUs with bf16,
squared error), timed with the whole batch in one forward and backward pass and again in the
micro-batches ``stream.train.micro_batch`` picks (and in every other divisor of the batch), alternating
configurations step by step so that a busy machine slows them alike. Prints one JSON line a width and tile:
``s_per_step`` by micro-batch size (the best of ``--steps`` timed steps after one warm-up), ``picked`` (the
size training uses) and ``speedup`` (whole batch ÷ picked).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream import cpu, train  # noqa: E402
from stream.model import Generator  # noqa: E402


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def time_steps(run: train.Run, x: torch.Tensor, y: torch.Tensor, micros: list[int], steps: int,
               amp: torch.dtype) -> dict[int, float]:
    """Best seconds a step of ``x`` for each micro-batch size, after one warm-up step each, interleaved."""
    loss_fn = lambda out, target: train.style_loss(out, target, 0.0, 0.0, "l2")  # noqa: E731
    best = {m: float("inf") for m in micros}
    for k in range(steps + 1):
        for m in micros:
            t0 = time.perf_counter()
            run.opt.zero_grad(set_to_none=True)
            for xi, yi in train.passes(x, y, m):
                run._backward(xi, yi, len(x), amp, loss_fn, None)
            run.opt.step()
            if k:
                best[m] = min(best[m], time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", type=floats, default=[1.0, 0.75, 0.5])
    p.add_argument("--tiles", type=floats, default=[192, 288, 384])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args(argv)
    device = torch.device("cpu")
    amp = torch.bfloat16 if cpu.current().has_bf16 else torch.float32
    print(json.dumps({"cpu_class": cpu.current().name, "threads": torch.get_num_threads(),
                      "amp": str(amp).replace("torch.", ""), "batch": args.batch}), flush=True)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        for width in args.widths:
            for tile in (int(t) for t in args.tiles):
                run = train.Run(Generator(width, upsample="asymmetric"), Path(tmp) / f"{width}-{tile}", device)
                run.model.train()
                x = torch.rand(args.batch, 3, tile, tile) * 2 - 1
                y = torch.rand(args.batch, 3, tile, tile) * 2 - 1
                picked = train.micro_batch(args.batch, tile, tile, train.widest_channels(run.model), device)
                micros = sorted((d for d in range(1, args.batch + 1) if args.batch % d == 0), reverse=True)
                best = time_steps(run, x, y, micros, args.steps, amp)
                print(json.dumps({"width": width, "tile": tile, "picked": picked,
                                  "s_per_step": {str(m): round(s, 3) for m, s in best.items()},
                                  "speedup": round(best[args.batch] / best[picked], 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
