"""Model-only speed against what this machine's CPU can do.

    python bench/model.py [--sizes 256,512,512x288] [--repeats 5]

Prints JSON lines: the measured matmul peak (fp32 and bf16, GFLOP/s), then per size and variant
the ``--style``'s generator's ms/frame (every variant is built with that style's architecture: width,
blocks, skip, upsampling) and achieved GFLOP/s (FLOPs counted by torch.utils.flop_counter, a
multiply-add counted as two) and its share of the matching matmul peak. Variants:
  eager-fp32    the generator as a plain nn.Module, fp32
  script-fp32   TorchScript, fp32 (the seed recipe's model path)
  engine-plain-norm  the engine's bf16 generator with torch's own GroupNorm in every layer (the
                baseline of PackedGroupNorm)
  engine        what animestream runs: TorchScript, bf16 weights and activations, channels_last,
                few-channel norms packed (stream.model.PackedGroupNorm), activation memory kept
                between frames (measured last: that malloc setting is global)
  engine-int8-plain-norm  engine-int8 with every quantized norm over the channels as they are (the
                baseline of stream.quant._batch_norm's packing)
  engine-int8   what animestream runs for a calibrated style whose INT8 keeps its quality bar: the
                shipped ``--style`` in INT8, uint8 frames in (its FLOPs counted as the float model's,
                so its GFLOP/s is the float work done per second, and its share of the bf16 peak can
                pass 100%)
  compiled-bf16 with ``--compiled`` (compiled-fp32 on CPUs without bf16): the engine's float
                generator through ``torch.compile`` (inductor: its own fused C++ kernels for the
                normalisation, padding and activations, oneDNN for the convolutions; needs a C++
                compiler), one graph per size; ``compile_s``: what each size's first call took
After each engine timing, where its time goes (torch.profiler, self time per aten op, ms per frame)
and the GFLOP/s of its convolutions alone: with those at the bf16 matmul peak, only the rest of the
time (normalisation, padding, upsampling, activations) is left to win back at this precision.
"""
from __future__ import annotations

import argparse
import copy
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from stream import weights
from stream import cpu, quant
from stream.engine import Engine, keep_activation_memory

MATMUL_N = 2048


def _best_time(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak(dtype: torch.dtype, repeats: int) -> float:
    a = torch.randn(MATMUL_N, MATMUL_N, dtype=dtype)
    b = torch.randn(MATMUL_N, MATMUL_N, dtype=dtype)
    return 2 * MATMUL_N ** 3 / _best_time(lambda: torch.mm(a, b), repeats) / 1e9


def parse_size(text: str) -> tuple[int, int]:
    """'512' -> (512, 512); '512x288' -> (512, 288): width, height."""
    w, _, h = text.lower().partition("x")
    return int(w), int(h or w)


def model_flops(model: torch.nn.Module, width: int, height: int) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(1, 3, height, width))
    return counter.get_total_flops()


def op_breakdown(module, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Self CPU time per aten op, ms per call of ``module(x)``, largest first."""
    with torch.inference_mode():
        module(x)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(repeats):
                module(x)
    ms = {e.key.removeprefix("aten::"): e.self_cpu_time_total / 1000 / repeats
          for e in prof.key_averages() if e.key.startswith("aten::") and e.self_cpu_time_total > 0}
    return dict(sorted(ms.items(), key=lambda kv: -kv[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="256,512", help="N for NxN, or WIDTHxHEIGHT, comma-separated "
                   "(default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--style", default="shinkai", help="the style whose generator is timed; calibrated, for "
                   "engine-int8 (default: %(default)s)")
    p.add_argument("--compiled", action="store_true", help="also time compiled-bf16 (~20 s to compile per size)")
    args = p.parse_args()
    peaks = {"fp32": matmul_peak(torch.float32, args.repeats)}
    if cpu.current().has_bf16:
        peaks["bf16"] = matmul_peak(torch.bfloat16, args.repeats)
    print(json.dumps({"matmul_gflops": {k: round(v, 1) for k, v in peaks.items()}, "threads": torch.get_num_threads()}))
    model = weights.eager_generator(weights.resolve(args.style)).eval()
    variants = {"eager-fp32": (model, torch.float32, torch.contiguous_format),
                "script-fp32": (torch.jit.script(copy.deepcopy(model)), torch.float32, torch.contiguous_format)}
    if cpu.current().has_bf16:  # the engines are built when their turn comes (below)
        variants["engine-plain-norm"] = (None, torch.bfloat16, torch.channels_last)
        variants["engine"] = (None, torch.bfloat16, torch.channels_last)
    if weights.resolve(args.style).calibrated:  # INT8 runs on every x86 class (7-bit weights without VNNI)
        variants["engine-int8-plain-norm"] = (None, torch.uint8, torch.channels_last)
        variants["engine-int8"] = (None, torch.uint8, torch.channels_last)
    if args.compiled:  # in the engine's float precision: bf16 where the CPU has it; compiled when its turn comes
        dtype = torch.bfloat16 if cpu.current().has_bf16 else torch.float32
        variants[f"compiled-{'bf16' if dtype == torch.bfloat16 else 'fp32'}"] = (None, dtype, torch.channels_last)
    sizes = {text: parse_size(text) for text in args.sizes.split(",")}
    flops = {size: model_flops(model, *wh) for size, wh in sizes.items()}
    label = {size: int(size) if size.isdigit() else size for size in sizes}  # JSON: 512, or "512x288"
    lanes = quant.PACK_LANES
    for name, (module, dtype, fmt) in variants.items():  # the engines last: their malloc setting is process-wide
        if name.startswith("engine"):
            keep_activation_memory()
        if name == "engine-plain-norm":  # the engine's bf16 generator with torch's own GroupNorm throughout
            module = torch.jit.script(copy.deepcopy(model)).to(torch.bfloat16).to(memory_format=torch.channels_last)
        elif name == "engine":
            module = Engine(args.style, precision="bf16", device="cpu").backend.module
        elif name.startswith("compiled"):  # last, after every torch.jit.script: torch.compile brings in dynamo,
            # after which scripting F.pad failed now and then ("builtin cannot be used as a value")
            module = torch.compile(copy.deepcopy(model).to(dtype).to(memory_format=fmt), dynamic=False)
        elif module is None:
            module = Engine(args.style, precision="int8", device="cpu").backend
        quant.PACK_LANES = 1 if name.endswith("plain-norm") else lanes  # read by the INT8 norms at each call
        for size, (w, h) in sizes.items():
            if dtype == torch.uint8:
                x = torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8).contiguous(memory_format=fmt)
            else:
                x = torch.rand(1, 3, h, w).mul(2).sub(1).to(dtype).contiguous(memory_format=fmt)
            compile_s = None
            if name.startswith("compiled"):  # the first call of a new shape compiles it
                t0 = time.perf_counter()
                with torch.inference_mode():
                    module(x)
                compile_s = round(time.perf_counter() - t0, 1)
            with torch.inference_mode():
                seconds = _best_time(lambda: module(x), args.repeats)
            gflops = flops[size] / seconds / 1e9
            peak = peaks["fp32" if dtype == torch.float32 else "bf16"] if "bf16" in peaks else peaks["fp32"]
            print(json.dumps({"size": label[size], "variant": name, "gflop_per_frame": round(flops[size] / 1e9, 1),
                              "ms_per_frame": round(seconds * 1000, 1), "gflops": round(gflops, 1),
                              "share_of_matmul_peak": round(gflops / peak, 3),
                              **({"compile_s": compile_s} if compile_s is not None else {})}), flush=True)
            if name == "engine":
                ms = op_breakdown(module, x, args.repeats)
                conv_ms = ms.get("mkldnn_convolution", 0.0)
                conv_gflops = flops[size] / conv_ms / 1e6 if conv_ms else 0.0
                total = sum(ms.values())
                print(json.dumps({"size": label[size], "variant": name, "profile_ms_per_frame": round(total, 1),
                                  "conv_share": round(conv_ms / total, 3), "conv_gflops": round(conv_gflops, 1),
                                  "conv_share_of_bf16_peak": round(conv_gflops / peak, 3),
                                  "ops_ms": {k: round(v, 1) for k, v in ms.items() if v >= 0.5}}), flush=True)


if __name__ == "__main__":
    main()
