"""INT8 inference against bf16: PyTorch's FX quantization and animestream's own INT8 path.

    python bench/int8.py [--style shinkai] [--size 512x288] [--repeat 6] [--input VIDEO]
                         [--weight-levels 127,63 [--photos 6]]

Prints one JSON line per configuration, timed alternately in this one process on the same input:

  bf16         the style as the engine runs it without calibration (TorchScript, channels-last)
  int8_fx      the FX-quantized generator (weights per channel, activations per tensor, calibrated
               on frames of the shipped sample). Every layer runs its convolution in INT8, but
               GroupNorm has no fast quantized kernel, so each layer dequantizes before it and
               quantizes again after
  int8_engine  stream/quant.py with the style's shipped calibration (NAME.ranges; else calibrated on
               the same frames as int8_fx): GroupNorm as a
               quantized batch norm on sampled statistics, padding as byte copies, ranges equalized
               per channel; what ``--precision auto`` runs for a calibrated style

``op_ms`` splits one call's time by operator. ``psnr_vs_fp32`` compares each output with the fp32
model's on a frame of the sample not used to calibrate either INT8 model.

``--weight-levels`` adds one line per level L: ``int8_engine`` with its weights quantized to [-L, L]
(:data:`stream.quant.WEIGHT_LEVELS`; 127 is 8 bits, 63 is 7), its ``psnr_vs_fp32`` on that frame and,
with ``--photos N``, ``photos_psnr_vs_fp32``, the mean over the first N photos the style's sidecar holds
back (at the sidecar's resolution, from ``--photos-root``), and ``cpu``, the class the kernels ran as.
Without VNNI (``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` emulates an AVX2 CPU) oneDNN's
u8 x s8 kernel saturates 16-bit sums of two products with 8-bit weights, so 127 falls far behind 63.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import av
import numpy as np
import torch
from torch.profiler import profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream import calibration, quant, weights  # noqa: E402
from stream.model import Generator  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "astronaut_pan.mp4"
CALIBRATION_EVERY = 12  # frames of the sample between calibration frames
TOP_OPS = 8  # operators listed in int8_op_ms
PHOTOS_ROOT = Path(__file__).resolve().parents[2] / "shared" / "media"  # the sidecars' photo names are relative to it


def cpu_class() -> str:
    """The instruction set torch's kernels run with here: ATen's (``torch.backends.cpu.get_cpu_capability()``,
    e.g. AVX2 or AVX512, limited by ``ATEN_CPU_CAPABILITY``), and ``ONEDNN_MAX_CPU_ISA`` where set, which
    limits oneDNN's INT8 and bf16 kernels."""
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA")
    aten = torch.backends.cpu.get_cpu_capability()
    return f"{aten} (oneDNN limited to {onednn})" if onednn else aten


def frames(width: int, height: int, video: Path = SAMPLE) -> list[torch.Tensor]:
    """Every CALIBRATION_EVERY-th frame of ``video``, as 1x3xHxW fp32 in [-1, 1]."""
    out = []
    with av.open(str(video)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % CALIBRATION_EVERY == 0:
                rgb = f.to_ndarray(format="rgb24", width=width, height=height)
                out.append(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1)
    return out


def quantize(model: Generator, samples: list[torch.Tensor]) -> torch.jit.ScriptModule:
    """PyTorch's own FX flow (for comparison). Imported here, after the style is scripted: with
    ``torch.ao.quantization.quantize_fx`` imported first, ``torch.jit.script`` of the generator failed in
    about 1 run in 12 ("builtin cannot be used as a value" at ``F.pad`` in ``Conv2d._conv_forward``)."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.backend_config import get_native_backend_config
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    torch.backends.quantized.engine = "onednn"
    prepared = prepare_fx(model, get_default_qconfig_mapping("onednn"), example_inputs=(samples[0],),
                          backend_config=get_native_backend_config())
    with torch.no_grad():
        for x in samples:
            prepared(x)
    return torch.jit.trace(convert_fx(prepared), samples[0])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) * 127.5).pow(2).mean())
    return round(10 * np.log10(255 ** 2 / mse), 2)


def parser(doc: str) -> argparse.ArgumentParser:
    """The options this script and bench/onnxrt.py share."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--style", default="shinkai")
    p.add_argument("--size", default="512x288", help="WIDTHxHEIGHT at inference (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=6, help="timed calls per configuration (default: %(default)s)")
    p.add_argument("--input", type=Path, default=SAMPLE, help="video the frames come from (default: the sample)")
    return p


def add_weight_level_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weight-levels", default="", help="comma-separated weight levels to compare, e.g. 127,63")
    p.add_argument("--photos", type=int, default=0, help="with --weight-levels: also score the style's first N "
                   "held-back photos (default: %(default)s)")
    p.add_argument("--photos-root", type=Path, default=PHOTOS_ROOT,
                   help="folder the sidecar's photo names are relative to (default: %(default)s)")


def held_back_photos(style: weights.Style, root: Path, count: int) -> list[torch.Tensor]:
    """The first ``count`` photos ``style``'s sidecar holds back, at its resolution, as 1x3xHxW uint8."""
    from stream.distill import fit_side
    from stream.sources import read_image

    quality = style.meta.get("quality", {})
    side = style.eval_side
    return [torch.from_numpy(fit_side(read_image(root / name), side)).permute(2, 0, 1)[None]
            for name in quality.get("val_photos", [])[:count]]


def weight_level_rows(fp32: Generator, ranges: dict, held: torch.Tensor, photos: list[torch.Tensor],
                      levels: list[int]) -> list[dict]:
    """``int8_engine`` with weights quantized to [-L, L] for each L of ``levels``, against fp32."""
    held_bytes = ((held + 1) * 127.5).round().to(torch.uint8).contiguous(memory_format=torch.channels_last)
    rows = []
    saved = quant.WEIGHT_LEVELS
    try:
        for level in levels:
            quant.WEIGHT_LEVELS = level
            engine = quant.Int8Generator(fp32, ranges)
            with torch.inference_mode():
                row = {"config": "int8_engine", "weight_levels": level, "cpu": cpu_class(),
                       "psnr_vs_fp32": psnr(engine.forward_uint8(held_bytes), fp32(held))}
                if photos:
                    row["photos"] = len(photos)
                    row["photos_psnr_vs_fp32"] = round(float(np.mean([
                        psnr(engine.forward_uint8(p.contiguous(memory_format=torch.channels_last)),
                             fp32(p.float() / 127.5 - 1)) for p in photos])), 2)
            rows.append(row)
    finally:
        quant.WEIGHT_LEVELS = saved
    return rows


def load(style: str) -> tuple[torch.jit.ScriptModule, Generator]:
    """The style as the engine loads it, and the same weights as an eager fp32 Generator."""
    warnings.filterwarnings("ignore")
    scripted = weights.load_model(style)
    return scripted, weights.eager_generator(scripted)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    add_weight_level_options(p)
    args = p.parse_args(argv)
    levels = [int(v) for v in args.weight_levels.split(",") if v]
    if any(not 1 <= v <= 127 for v in levels):
        print("error: --weight-levels must be integers in 1..127", file=sys.stderr)
        return 1
    width, height = (int(v) for v in args.size.lower().split("x"))
    scripted, fp32 = load(args.style)
    data = frames(width, height, args.input)
    samples, held = data[:-1], data[-1]
    # FX cannot trace the guided filter (its box sums size tensors from the input's shape): no int8_fx row then.
    int8 = quantize(fp32, samples) if fp32.guided_radius <= 0 else None
    style = weights.resolve(args.style)
    if style.calibrated:  # the shipped calibration
        ranges = weights.load_ranges(style, fp32)
    else:  # an uncalibrated file: the same frames int8_fx calibrates on
        ranges = calibration.calibrate(fp32, samples)
    engine = quant.Int8Generator(fp32, ranges)
    bf16 = scripted.to(torch.bfloat16).to(memory_format=torch.channels_last)
    held_bytes = ((held + 1) * 127.5).round().to(torch.uint8).contiguous(memory_format=torch.channels_last)
    inputs = {"bf16": held.to(torch.bfloat16).contiguous(memory_format=torch.channels_last), "int8_fx": held,
              "int8_engine": held_bytes}
    models = {"bf16": bf16, "int8_fx": int8, "int8_engine": engine.forward_uint8}
    if int8 is None:
        del models["int8_fx"]
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        reference = fp32(held)
        for name, model in models.items():
            model(inputs[name])
        for _ in range(args.repeat):
            for name, model in models.items():
                t0 = time.perf_counter()
                model(inputs[name])
                times[name].append(time.perf_counter() - t0)
        for name, model in models.items():
            with profile() as prof:
                model(inputs[name])
            ops = sorted(((e.key, e.self_cpu_time_total / 1000) for e in prof.key_averages()), key=lambda kv: -kv[1])
            row = {"config": name, "size": args.size, "cpu": cpu_class(), "ms_min": round(1000 * min(times[name]), 1),
                   "ms_median": round(1000 * float(np.median(times[name])), 1),
                   "psnr_vs_fp32": psnr(model(inputs[name]), reference), "threads": torch.get_num_threads(),
                   "op_ms": {k: round(v, 1) for k, v in ops[:TOP_OPS]}}
            print(json.dumps(row), flush=True)
    photos = held_back_photos(style, args.photos_root, args.photos) if levels and args.photos else []
    for row in weight_level_rows(fp32, ranges, held, photos, levels):
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
