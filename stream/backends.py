"""Backends: the one interface through which the engine runs a generator, and the registry of them.

A backend is made once per engine by a factory in :data:`BACKENDS`, under the name that
:func:`stream.policy.choose` picked (or that a caller asked for: ``EngineOptions(backend=...)``), and
then only called. The contract, which a test fake implements too (:func:`register`):

* ``backend(frame)`` takes one frame, a ``1 x 3 x H x W`` ``uint8`` RGB tensor on the host (a view of
  the engine's buffer in channels-last strides; H and W are multiples of 4), and returns the
  stylised frame, ``1 x 3 x H x W`` floating point in [-1, 1] on the backend's device. The result
  may be a buffer the backend reuses at the next call; the caller copies it out first.
* ``name``, ``precision`` (``fp32``, ``bf16``, ``fp16`` or ``int8``) and ``device`` say what runs;
  ``module`` is the float ``torch.nn.Module`` where there is one (the GPU's batched path and the
  benchmarks call it directly), else None.
* A backend is not thread-safe: the engine calls it from one thread at a time.
* Optionally ``reset()``: a backend that carries state from one frame to the next (``int8``: the
  ranges a frame needed) forgets it; the engine calls it before an unrelated picture or stream.

Built in: ``torch`` (TorchScript, fp32 or bf16, on the CPU), ``int8`` (:mod:`stream.quant`),
``onnxruntime`` (ONNX styles) and ``cuda`` (fp16/bf16/fp32 on a GPU).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from . import quant, weights
from .model import with_folded_affines, with_packed_group_norm, with_parallel_group_norm
from .weights import Style

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class BackendRequest:
    """What a factory gets: the style, the precision, the device, the CPU threads, whether to
    ``torch.compile`` (CUDA) and whether float tensors are channels-last (the CPU class's row)."""

    style: Style
    precision: str
    device: torch.device
    threads: int = 1
    compile: bool = False
    channels_last: bool = True


@runtime_checkable
class Backend(Protocol):
    name: str
    precision: str
    device: torch.device
    module: torch.nn.Module | None

    def __call__(self, frame: torch.Tensor) -> torch.Tensor:
        """``1 x 3 x H x W`` uint8 RGB on the host in, ``1 x 3 x H x W`` float in [-1, 1] out (maybe reused)."""


class _FloatInput:
    """The frame as the float model wants it: one reused ``1 x 3 x H x W`` tensor of ``dtype`` on
    ``device``, filled from the uint8 frame and scaled to [-1, 1]."""

    def __init__(self, dtype: torch.dtype, device: torch.device, channels_last: bool):
        self.dtype, self.device, self.channels_last = dtype, device, channels_last
        self._buffer: torch.Tensor | None = None

    def __call__(self, frame: torch.Tensor) -> torch.Tensor:
        if self._buffer is None or self._buffer.shape != frame.shape:
            buf = torch.empty(tuple(frame.shape), dtype=self.dtype, device=self.device)
            self._buffer = buf.contiguous(memory_format=torch.channels_last) if self.channels_last else buf
        self._buffer.copy_(frame, non_blocking=True)
        return self._buffer.mul_(1 / 127.5).sub_(1.0)


class TorchBackend:
    """A float generator in TorchScript on the CPU (fp32 or bf16; in bf16 channels-last, our generators
    with :class:`~stream.model.PackedGroupNorm` for their few-channel norms)."""

    name = "torch"

    def __init__(self, req: BackendRequest):
        self.precision, self.device = req.precision, req.device
        if req.style.format in ("safetensors", "state_dict"):
            eager = with_folded_affines(weights.eager_generator(req.style))  # a norm-free style's affines
            if req.precision == "bf16" and req.channels_last:  # few-channel norms packed (3x faster each on a
                eager = with_packed_group_norm(eager)  # quarter-width network)
            module = torch.jit.script(eager)
        else:
            module = weights.load_model(req.style)
        if req.style.format == "torchscript":  # any TorchScript file loads: check it is a generator at all
            weights.check_generator(module, req.style.path)
        memory = torch.channels_last if req.channels_last else torch.contiguous_format
        self.module = module.to(self.device).to(DTYPES[self.precision]).to(memory_format=memory).eval()
        self._input = _FloatInput(DTYPES[self.precision], self.device, req.channels_last)

    def __call__(self, frame: torch.Tensor) -> torch.Tensor:
        return self.module(self._input(frame))


class CudaBackend(TorchBackend):
    """A float generator on a GPU: our generators eager with :class:`~stream.model.GroupNorm1` (one
    parallel reduction per norm), scripted or ``torch.compile``d; contiguous memory (faster there)."""

    name = "cuda"

    def __init__(self, req: BackendRequest):
        if req.style.format not in ("safetensors", "state_dict"):  # a TorchScript file: as on the CPU
            super().__init__(BackendRequest(req.style, req.precision, req.device, req.threads, channels_last=False))
            return
        self.precision, self.device = req.precision, req.device
        dtype = DTYPES[self.precision]
        eager = with_parallel_group_norm(with_folded_affines(weights.eager_generator(req.style)))
        eager = eager.to(self.device).to(dtype).eval()
        self.module = torch.compile(eager) if req.compile else torch.jit.script(eager)
        self.eager = eager  # what the engine runs on the device (Engine._batch_module)
        self._input = _FloatInput(dtype, self.device, channels_last=False)


class Int8Backend:
    """:class:`stream.quant.Int8Generator` with the style's calibration, on the CPU: reads the frame's bytes."""

    name = "int8"
    precision = "int8"
    module = None

    def __init__(self, req: BackendRequest):
        self.device = req.device
        model = weights.eager_generator(req.style)
        self._int8 = quant.Int8Generator(model, weights.load_ranges(req.style, model),
                                         weights.load_float_layers(req.style, model))

    def __call__(self, frame: torch.Tensor) -> torch.Tensor:
        return self._int8.forward_uint8(frame)

    def reset(self) -> None:
        self._int8.reset()


class OnnxBackend:
    """An ONNX style through onnxruntime, fp32 (on CUDA where its CUDA provider is installed)."""

    name = "onnxruntime"
    precision = "fp32"
    module = None

    def __init__(self, req: BackendRequest):
        self.device = req.device
        self._run = weights.onnx_generator(req.style, threads=req.threads, cuda=req.device.type == "cuda")
        weights.check_generator(self._run, req.style.path)
        self._input = _FloatInput(torch.float32, req.device, channels_last=False)

    def __call__(self, frame: torch.Tensor) -> torch.Tensor:
        return self._run(self._input(frame))


Factory = Callable[[BackendRequest], Backend]
BACKENDS: dict[str, Factory] = {
    "torch": TorchBackend,
    "cuda": CudaBackend,
    "int8": Int8Backend,
    "onnxruntime": OnnxBackend,
}


def register(name: str, factory: Factory) -> None:
    """Add (or replace) a backend: ``EngineOptions(backend=name)`` then runs every frame through it."""
    BACKENDS[name] = factory


def create(name: str, req: BackendRequest) -> Backend:
    """The backend ``name`` for ``req``; ValueError for a name nobody registered."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {name!r}") from None
    return factory(req)
