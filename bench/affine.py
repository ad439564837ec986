"""A norm-free style (``norm="affine"``) against a single-group one, and its affines folded or not.

    python bench/affine.py [--styles cartoon,OLD.safetensors] [--size 512x384] [--repeats 7]

For each style and precision (fp32, bf16 where the CPU has it, int8 where the style is calibrated) one
JSON line: the median ms per frame of the backend the engine builds (``stream.backends``, its input a
uint8 frame of ``--size``), and for a norm-free style in fp32 and bf16 also ``unfolded_ms``: the same
TorchScript module with every :class:`~stream.model.ChannelAffine` left as its own pass
(:func:`stream.model.with_folded_affines` is what removes it). ``ONEDNN_MAX_CPU_ISA`` /
``ATEN_CPU_CAPABILITY`` limit torch as for the engine.
"""
from __future__ import annotations

import argparse
import json

import torch

from norms import _ms  # bench/norms.py, beside this script: the median ms of repeated calls after a warm-up
from stream import backends, cpu, weights
from stream.model import with_packed_group_norm


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--styles", default="cartoon", help="style names or files, comma-separated")
    p.add_argument("--size", default="512x384", help="WxH of the frame (multiples of 4)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: one per core)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.lower().split("x"))
    frame = torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    info = cpu.current()
    precisions = ["fp32"] + (["bf16"] if info.has_bf16 else [])
    for name in args.styles.split(","):
        style = weights.resolve(name)
        model = weights.eager_generator(style)
        for precision in precisions + (["int8"] if style.calibrated else []):
            kind = "int8" if precision == "int8" else "torch"
            req = backends.BackendRequest(style, precision, torch.device("cpu"), torch.get_num_threads())
            backend = backends.create(kind, req)
            row = {"style": style.name, "norm": model.norm, "cpu_class": info.describe(), "precision": precision,
                   "size": f"{w}x{h}", "ms": None, "unfolded_ms": None}
            with torch.inference_mode():
                row["ms"] = round(_ms(lambda: backend(frame), args.repeats), 1)
                if model.norm == "affine" and precision != "int8":
                    dtype = backends.DTYPES[precision]
                    plain = torch.jit.script(with_packed_group_norm(weights.eager_generator(style)))
                    plain = plain.to(dtype).to(memory_format=torch.channels_last).eval()
                    x = (frame.to(dtype) / 127.5 - 1).contiguous(memory_format=torch.channels_last)
                    row["unfolded_ms"] = round(_ms(lambda: plain(x), args.repeats), 1)
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
