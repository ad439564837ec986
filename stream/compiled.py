"""``--compile`` that pays only when it pays: one compiled generator per style, warmed once per shape.

``torch.compile`` costs 17-37 s per new input shape on an H200 (``../shared/gpu/README.md``) and then
runs the model at 512x512 1.6x faster (499 against 318 fps). A 150-frame job paid 37 s to save under a
second. So:

- the compiled module is kept per process, keyed by style file, precision and device
  (:func:`compiled_module`), and reused by every engine of that style: the files of a folder, the jobs
  of a batch, the segments of a video;
- each batch shape is compiled once, on a dummy batch, before a job's clock starts (:func:`warm`), and
  remembered;
- a job too short to earn the compile time back runs the plain module (:func:`worth_compiling`), and
  says so in its statistics.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import torch

COMPILE_S = 30.0  # seconds one new shape takes to compile (17-37 s measured)
# Model seconds compiling saves per input pixel: 1 / 318 - 1 / 499 s per 512x512 frame (hayao, H200).
SAVED_S_PER_PIXEL = (1 / 318 - 1 / 499) / (512 * 512)

_modules: dict[tuple, torch.nn.Module] = {}
_warm: set[tuple] = set()


def compiled_module(key: tuple, eager: torch.nn.Module, compile_fn: Callable | None = None) -> torch.nn.Module:
    """The compiled form of ``eager`` for ``key`` (style file, precision, device): made on first use
    (``compile_fn``, default ``torch.compile(..., dynamic=False)``: one specialised graph per shape), then
    the same object for every later engine of that key."""
    module = _modules.get(key)
    if module is None:
        compile_fn = compile_fn or (lambda m: torch.compile(m, dynamic=False))
        module = _modules[key] = compile_fn(eager)
    return module


def is_warm(key: tuple, shape: tuple[int, ...]) -> bool:
    return (key, tuple(shape)) in _warm


def worth_compiling(frames: int | None, width: int, height: int, warm: bool) -> tuple[bool, str]:
    """Whether a job of ``frames`` frames (None: unknown) at a model size of ``width`` x ``height`` pixels
    should run compiled, and a note saying why not ("" when it should)."""
    if warm or frames is None:
        return True, ""
    saved = frames * width * height * SAVED_S_PER_PIXEL
    if saved >= COMPILE_S:
        return True, ""
    pays_from = int(COMPILE_S / (width * height * SAVED_S_PER_PIXEL)) + 1
    return False, (f"not compiled: {frames} frames at {width}x{height} would save about {saved:.1f} s of model "
                   f"time, compiling costs about {COMPILE_S:.0f} s (it pays from about {pays_from} frames)")


@torch.inference_mode()
def warm(key: tuple, module: torch.nn.Module, shape: tuple[int, int, int, int], dtype: torch.dtype,
         device: torch.device) -> float:
    """Compile ``module`` for inputs of ``shape`` (N, 3, H, W) on a dummy batch, once per key and shape;
    returns the seconds it took (0 when it was warm already)."""
    if is_warm(key, shape):
        return 0.0
    t0 = time.perf_counter()
    module(torch.zeros(shape, dtype=dtype, device=device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    _warm.add((key, tuple(shape)))
    return time.perf_counter() - t0
