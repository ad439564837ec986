"""ONNX Runtime (fp32, and INT8 with VNNI kernels) against the engine's bf16 TorchScript.

    pip install -e '.[bench]'        # onnxruntime, onnx, onnxscript
    python bench/onnxrt.py [--style shinkai] [--size 512x288] [--repeat 6]

Exports the style's generator to ONNX (torch.onnx.export, dynamo), quantizes a copy statically
(onnxruntime.quantization, QOperator format: uint8 activations, per-channel int8 weights, calibrated
on frames of the shipped sample) and times bf16 TorchScript, ORT fp32 and ORT int8 alternately in
this one process on the same held-back frame, with the same thread count. Prints one JSON line per
configuration; ``psnr_vs_fp32`` compares each output with the fp32 PyTorch model's.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from int8 import frames, load, parser, psnr  # noqa: E402  (bench/int8.py, beside this script)

ONNX_OPSET = 18


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__).parse_args(argv)
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    except ImportError:
        print("bench/onnxrt.py needs onnxruntime, onnx and onnxscript: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    width, height = (int(v) for v in args.size.lower().split("x"))
    logging.getLogger().setLevel(logging.ERROR)  # the quantizer's advice to pre-process; timed as is
    scripted, fp32 = load(args.style)
    data = frames(width, height, args.input)
    calibration, held = data[:-1], data[-1]
    threads = torch.get_num_threads()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as stream.onnxgen: else its
    # threads spin on after each run and slow the torch model timed next (48 -> 75 ms, stream/onnxgen.py)

    class Calibration(CalibrationDataReader):
        def __init__(self, name: str):
            self.items = iter([{name: x.numpy()} for x in calibration])

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        plain, quant = str(Path(tmp) / "g.onnx"), str(Path(tmp) / "g_int8.onnx")
        with contextlib.redirect_stdout(sys.stderr):  # the exporter reports progress on stdout
            torch.onnx.export(copy.deepcopy(fp32), (held,), plain, dynamo=True, opset_version=ONNX_OPSET)
        name = ort.InferenceSession(plain, options).get_inputs()[0].name
        quantize_static(plain, quant, Calibration(name), quant_format=QuantFormat.QOperator,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
        sessions = {k: ort.InferenceSession(v, options, providers=["CPUExecutionProvider"])
                    for k, v in (("ort_fp32", plain), ("ort_int8", quant))}
    bf16 = scripted.to(torch.bfloat16).to(memory_format=torch.channels_last)
    held_bf16 = held.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    runs = {"bf16": lambda: bf16(held_bf16).float()}
    for key, sess in sessions.items():
        runs[key] = lambda sess=sess: torch.from_numpy(sess.run(None, {name: held.numpy()})[0])
    times: dict[str, list[float]] = {k: [] for k in runs}
    with torch.inference_mode():
        reference = fp32(held)
        outputs = {k: run() for k, run in runs.items()}
        for _ in range(args.repeat):
            for key, run in runs.items():
                t0 = time.perf_counter()
                run()
                times[key].append(time.perf_counter() - t0)
    for key in runs:
        print(json.dumps({"config": key, "size": args.size, "ms_min": round(1000 * min(times[key]), 1),
                          "ms_median": round(1000 * float(np.median(times[key])), 1),
                          "psnr_vs_fp32": psnr(outputs[key], reference), "threads": threads}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
