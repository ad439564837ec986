"""The inference engine: one TorchScript generator, run at a capped resolution on reused buffers.

An :class:`Engine` turns an RGB ``uint8`` frame (H x W x 3) into a stylised frame of the same size.
Frames larger than ``max_side`` pixels are resized so their longest side fits (aspect ratio kept,
sides rounded to a multiple of :data:`SIDE_MULTIPLE`), stylised, and resized back; smaller ones
are stylised as they are (file jobs decode frames at that size, so OpenCV is only loaded when a
frame really needs resizing). Every tensor and array on that path is allocated once per input
resolution and reused, so memory stays flat over a stream.
The model itself runs through a backend (:mod:`stream.backends`), picked once per engine from this CPU
class's row of :mod:`stream.policy` (or named in :class:`EngineOptions`): the engine never asks what
format or precision a style has.
An engine is not thread-safe: the pipeline calls it from its single inference thread.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from . import backends, batching, cpu, policy, weights
from .errors import AnimestreamError, OutOfMemoryError
from .policy import PRECISIONS
from .weights import Style

DEFAULT_MAX_SIDE = 512  # pixels, longest side at inference
SIDE_MULTIPLE = 4  # pixels; the generator downsamples twice
MIN_SIDE = 2 * SIDE_MULTIPLE  # pixels; smaller inputs cannot be reflect-padded after two downsamplings
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_THREADS = torch.get_num_threads()  # PyTorch's own choice (one per core), read before anyone changes it
LITE_SPARE_CORES = 1  # a lite style's small layers gain little from threads; decode and encode use that core
# Peak activation memory of the full-width generator per input pixel, bytes, by precision (fp32 measured at
# 512x288: ~1.4 KB; bf16 and INT8 values take a half and a quarter of that); scaled by a style's width.
ACTIVATION_BYTES_PER_PIXEL = {"fp32": 1400, "fp16": 700, "bf16": 700, "int8": 350}
MEMORY_HEADROOM = 0.8  # share of the available memory the model's activations may take
MAX_AUTO_BATCH = 16  # frames per model call the engine picks at most on a GPU
BATCH_MEMORY_SHARE = 0.5  # of the free GPU memory, what a batch's activations may take
# File jobs on a GPU run one batch shape from start to end (the last batch is padded to it), so cuDNN's
# per-shape algorithm search (torch.backends.cudnn.benchmark) is paid once, in the warm-up (Engine.fit_batch).
# It pays only where the model sets the pace and the job is long: a job of at least this many frames turns
# it on; shorter ones (and live streams) keep cuDNN's heuristics (bench/gpu.py times both and the search).
CUDNN_BENCHMARK_FRAMES = 2000

# CUDA loads each kernel's module when it first runs instead of all of torch's at start-up (CUDA's default
# since 12.2, which torch also sets); set only where the environment says nothing, before CUDA starts.
os.environ.setdefault("CUDA_MODULE_LOADING", "LAZY")

MALLOC_MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's maximum: activations this size come from the heap
MALLOC_TRIM_THRESHOLD_BYTES = 2**30  # and freed heap memory is kept for the next frame
MALLOC_ARENAS = 1  # one heap for all threads: per-thread arenas would each keep their own high-water mark
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # mallopt() parameter numbers (malloc.h)
_malloc_tuned = False


@functools.cache
def _glibc_function(name: str):
    """A function of the C library if it is glibc, else None (looked up once: ``find_library`` runs
    ``ldconfig``, and every engine, one per style switch, asks)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def release_free_heap() -> bool:
    """Give the heap's free memory back to the system (glibc's ``malloc_trim``), once a style is loaded.

    Loading goes through temporaries (the TorchScript module, an eager copy, float weights) that
    :func:`keep_activation_memory`'s trim threshold would otherwise keep resident: 20 MB for an
    INT8 style. Returns False where there is no glibc.
    """
    trim = _glibc_function("malloc_trim")
    return trim is not None and bool(trim(0))


def keep_activation_memory() -> bool:
    """Make glibc keep the model's activation memory between frames instead of unmapping it.

    By default glibc serves large tensors with fresh ``mmap`` pages and returns them on free, so
    every frame page-faults all of its activations in again: at 512x288 that was 40% of the model
    time (0.62 against 0.38 s per frame, ``bench/RESULTS.md``). The fixed thresholds keep them on
    the heap, reused frame after frame, in one arena for all threads; the heap keeps its high-water
    mark, so RSS stays flat at about the first frame's peak. Process-wide, and only ever tightened
    once. Returns False where there is no glibc (macOS, Windows, musl), which changes nothing.
    """
    global _malloc_tuned
    if _malloc_tuned:
        return True
    mallopt = _glibc_function("mallopt")
    if mallopt is None:
        return False
    _malloc_tuned = bool(mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD_BYTES)
                         and mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD_BYTES)
                         and mallopt(_M_ARENA_MAX, MALLOC_ARENAS))
    return _malloc_tuned


def default_threads(style: Style) -> int:
    """CPU threads for a style: every core, or all but :data:`LITE_SPARE_CORES` for a lite style
    (:attr:`Style.lite`). On 2 cores a lite style runs the live path at 26 fps with one
    thread against 22 with two; the full model is faster with both (``bench/RESULTS.md``)."""
    if style.lite:
        return max(1, DEFAULT_THREADS - LITE_SPARE_CORES)
    return DEFAULT_THREADS


def resolve_device(device: str) -> torch.device:
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise AnimestreamError("device cuda: no CUDA GPU is available to this PyTorch build")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def inference_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) to run the model at: longest side <= ``max_side`` (0 = no cap), aspect kept.

    A frame within the cap runs at its own size (no resampling, so no blur); a larger one is scaled
    down to sides that are multiples of :data:`SIDE_MULTIPLE`. Sides are at least :data:`MIN_SIDE`.
    """
    scale = 1.0 if max_side <= 0 else min(1.0, max_side / max(width, height))
    if scale == 1.0 and min(width, height) >= MIN_SIDE:
        return width, height
    limit = max(MIN_SIDE, max_side // SIDE_MULTIPLE * SIDE_MULTIPLE) if max_side > 0 else None

    def side(n: int) -> int:
        v = max(MIN_SIDE, int(round(n * scale / SIDE_MULTIPLE)) * SIDE_MULTIPLE)
        return min(v, limit) if limit else v

    return side(width), side(height)


def available_memory_bytes(device: torch.device) -> int | None:
    """Memory free for new allocations: the GPU's free memory, or the system's MemAvailable (Linux);
    None where unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _resize(src: np.ndarray, dst: np.ndarray) -> None:
    """Resize ``src`` into ``dst`` (area averaging down, bilinear up)."""
    import cv2

    shrink = dst.shape[0] < src.shape[0]
    cv2.resize(src, (dst.shape[1], dst.shape[0]), dst=dst, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


@dataclass(frozen=True)
class EngineOptions:
    """How an engine runs a style: what the CLI, the live style switcher and the service pass around.

    ``max_side`` caps the inference resolution in pixels (0: no cap; None: the style's
    ``recommended_max_side``, else :data:`DEFAULT_MAX_SIDE`); ``precision`` is one of
    :data:`PRECISIONS`; ``device`` one of :data:`DEVICES`; ``threads`` the CPU thread count
    (0: :func:`default_threads`); ``backend`` ``auto`` (this CPU class's policy) or the name of a
    registered backend (:data:`stream.backends.BACKENDS`), which then runs every frame.
    """

    max_side: int | None = None
    precision: str = "auto"
    device: str = "auto"
    threads: int = 0
    batch: int = 0  # frames per model call in file jobs: 0 = the engine's choice (1 on the CPU)
    compile: bool = False  # torch.compile the generator (CUDA), paying a one-off compile time
    backend: str = "auto"

    def __post_init__(self):
        if self.batch < 0:
            raise ValueError(f"batch must be >= 0, not {self.batch}")
        if self.max_side is not None and self.max_side < 0:
            raise ValueError(f"max_side must be >= 0 pixels, not {self.max_side}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, not {self.threads}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")


@runtime_checkable
class FrameEngine(Protocol):
    """What jobs call: an :class:`Engine`, or a wrapper of one (:class:`~stream.deflicker.Deflicker`,
    :class:`~stream.live.StyleSwitcher`)."""

    style: str
    precision: str
    max_side: int
    device: torch.device

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """One RGB uint8 H x W x 3 frame in, the stylised frame of the same size out (may be reused)."""

    def inference_shape(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) the model runs at for a frame of that size."""

    def reset(self) -> None:
        """Forget earlier frames (a new, unrelated stream follows)."""


class EngineWrapper:
    """The :class:`FrameEngine` attributes of a wrapper, read from the engine it wraps now
    (:meth:`wrapped`): what :class:`~stream.deflicker.Deflicker` and :class:`~stream.live.StyleSwitcher`
    share."""

    def wrapped(self) -> FrameEngine:
        raise NotImplementedError

    @property
    def style(self) -> str:
        return self.wrapped().style

    @property
    def precision(self) -> str:
        return self.wrapped().precision

    @property
    def max_side(self) -> int:
        return self.wrapped().max_side

    @property
    def device(self) -> torch.device:
        return self.wrapped().device

    def inference_shape(self, width: int, height: int) -> tuple[int, int]:
        return self.wrapped().inference_shape(width, height)


@dataclass
class _Buffers:
    """Everything the hot path writes into, for one input resolution."""

    small: np.ndarray  # h x w x 3 uint8, the resized input (the backend reads it as 1 x 3 x h x w)
    out_f32: torch.Tensor  # 1 x 3 x h x w float32 on the device, the model output
    out_u8: torch.Tensor  # 1 x h x w x 3 uint8 on the host, the model output
    full: np.ndarray  # H x W x 3 uint8, the result at the input resolution


@dataclass
class _DeviceSlot:
    """Pinned host buffers and device buffers for one batch of N frames of H x W on a GPU (two of them
    alternate, so one batch's download overlaps the next one's upload and compute)."""

    host_in: torch.Tensor  # N x H x W x 3 uint8, pinned
    dev_in: torch.Tensor  # N x H x W x 3 uint8 on the device
    host_out: torch.Tensor  # N x H x W x 3 uint8, pinned
    uploaded: torch.cuda.Event | None  # None where the device is the CPU (tests run this path there)
    done: torch.cuda.Event | None

    def wait(self) -> None:
        if self.done is not None:
            self.done.synchronize()


class Engine:
    """Stylise frames with one generator.

    ``style`` is a :class:`~stream.weights.Style`, a style name or a weights path (resolved once, see
    :func:`stream.weights.resolve`); ``options`` an :class:`EngineOptions`, whose fields may also be
    given as keywords (``Engine("hayao", max_side=256)``). ``threads`` is PyTorch's process-wide
    setting, re-applied on each call. ``choice`` says which backend and precision run the style and
    why (:func:`stream.policy.choose`); ``net`` is the style whose weights run: the style itself, or the
    narrower variant the policy put in its place on this CPU class. A ``.onnx`` style runs through
    onnxruntime in fp32.
    """

    # --compile on a GPU (stream.compiled): the compiled module shared by every engine of this style, the
    # batch shape it was warmed for (None: the plain module runs), and why it was not used ("" if it was)
    _compiled_module: torch.nn.Module | None = None
    _compiled_shape: tuple[int, int, int, int] | None = None
    compile_note = ""

    def __init__(self, style: Style | str | os.PathLike = weights.DEFAULT_STYLE, options: EngineOptions | None = None,
                 **overrides):
        self.options = options = dataclasses.replace(options or EngineOptions(), **overrides)
        self.spec = spec = weights.resolve(style)
        self.style = spec.name
        self.meta = spec.meta
        self.threads = options.threads or default_threads(spec)
        torch.set_num_threads(self.threads)
        self.max_side = options.max_side if options.max_side is not None else (
            spec.recommended_max_side or DEFAULT_MAX_SIDE)
        self.device = resolve_device(options.device)
        if self.device.type == "cpu":
            keep_activation_memory()
        self.cpu = cpu.current()
        self.choice = self._choose(spec, options)
        # the network that runs: the style's own, or the narrower variant the policy put in its place
        self.net = weights.resolve(self.choice.variant) if self.choice.variant else spec
        self.backend = backends.create(self.choice.backend, backends.BackendRequest(
            self.net, self.choice.precision, self.device, self.threads, options.compile,
            policy.POLICY[self.cpu.name].channels_last))
        self.precision = self.backend.precision
        self.dtype = backends.DTYPES.get(self.precision, torch.float32)
        self.module = self.backend.module  # the float module where there is one (the GPU's batched path)
        # On a GPU the frames are resized there (full-size frames in, full-size results out); elsewhere
        # file jobs decode straight at the inference size and the encoder scales back (swscale). Tests set
        # it on a CPU engine to run the GPU path's batching and resize arithmetic on the CPU.
        self.resizes_on_device = self.device.type == "cuda" and self.module is not None
        self.batch_size = options.batch or self._auto_batch()
        self.compile_s = 0.0  # the one-off cost of --compile: warming each new batch shape (stream.compiled)
        self.warm_s = 0.0  # a GPU's one-off warm-up per batch shape before a job's clock starts (fit_batch)
        self._warm_shapes: set[tuple[int, int, int, bool]] = set()
        self._slot_key: tuple[int, int, int] | None = None  # the GPU path's buffers are for this batch shape
        self._slots: list[_DeviceSlot] = []
        if self.device.type == "cpu":
            release_free_heap()  # the loading temporaries are gone by now
        self._buffers: dict[tuple[int, int], _Buffers] = {}
        self._lock = threading.Lock()

    def _check_memory(self, w: int, h: int, frames: int = 1) -> None:
        """Refuse a resolution whose activations would not fit, before allocating anything for it."""
        if self.net.format == "onnx":
            return  # onnxruntime's own arena; it reports its own failures
        per_pixel = ACTIVATION_BYTES_PER_PIXEL[self.precision] * self.net.architecture["width"]
        need, free = w * h * per_pixel * frames, available_memory_bytes(self.device)
        if free is not None and need > free * MEMORY_HEADROOM:
            fits = int((free * MEMORY_HEADROOM / per_pixel * max(w, h) / min(w, h)) ** 0.5) // SIDE_MULTIPLE
            raise OutOfMemoryError(f"the model needs about {need / 2**30:.1f} GiB at {w}x{h}, {free / 2**30:.1f} GiB "
                                   f"is free: cap the size it runs at, e.g. max_side {fits * SIDE_MULTIPLE}")

    def _choose(self, spec: Style, options: EngineOptions) -> policy.Choice:
        """This CPU class's policy, or the backend ``options`` names (at its precision; fp32 for auto)."""
        if options.backend == "auto":
            return policy.choose(spec, self.device, options.precision, self.cpu, self.max_side)
        precision = "fp32" if options.precision == "auto" else options.precision
        where = "cuda" if self.device.type == "cuda" else self.cpu.name
        return policy.Choice(options.backend, precision, where, (f"{options.backend}: asked for",))

    def _auto_batch(self, width: int = 0, height: int = 0) -> int:
        """1 on the CPU (batching measured no faster there); on a GPU, for frames of ``width`` x ``height``
        pixels (0: a ``max_side`` square, or 1 frame when there is no cap: the size is not known yet), as
        many as half the free memory holds, at most :data:`MAX_AUTO_BATCH` and 8 full-size 1080p frames'
        pixels (the host holds each batch's frames several times over), and never so many that an
        intermediate passes torch's 32-bit index limit (:mod:`stream.batching`)."""
        if not self.resizes_on_device:
            return 1
        arch = self.net.architecture
        if not width:  # at construction: a guess that never refuses, until fit_batch knows the size
            if not self.max_side or batching.index_limited_batch(arch, self.max_side, self.max_side) < 1:
                return 1
            width = height = self.max_side
        w, h = inference_size(width, height, self.max_side)
        if batching.index_limited_batch(arch, w, h) < 1:
            suggestion = batching.largest_side_that_fits(arch, width, height, inference_size)
            raise batching.frame_too_large(arch, w, h, suggestion)
        per_pixel = ACTIVATION_BYTES_PER_PIXEL[self.precision] * arch["width"]
        return batching.auto_batch(arch, w, h, bytes_per_pixel=per_pixel, requested=self.options.batch,
                                   free_bytes=available_memory_bytes(self.device), max_batch=MAX_AUTO_BATCH,
                                   share=BATCH_MEMORY_SHARE, frame_pixels=width * height)

    def fit_batch(self, width: int, height: int, frames: int | None = None) -> int:
        """Size :attr:`batch_size` for frames of ``width`` x ``height`` pixels (a file job calls this once it
        knows its video's size): the automatic batch, or ``--batch`` lowered to the index limit. Raises a
        one-line :class:`~stream.errors.OutOfMemoryError` naming a ``--max-side`` that fits when not even
        one frame does. With ``--compile``, a job of ``frames`` frames (None: unknown) long enough to earn
        the compile time back gets the compiled module, warmed here, before its clock starts; a shorter
        one runs the plain module and :attr:`compile_note` says why. On the CPU it changes nothing."""
        if self.resizes_on_device:
            self.batch_size = self._auto_batch(width, height)
            self._prepare_compiled(self.batch_size, *inference_size(width, height, self.max_side), frames)
            if self.device.type == "cuda":
                self._warm_device(self.batch_size, width, height, frames)
        return self.batch_size

    def _warm_device(self, n: int, width: int, height: int, frames: int | None) -> None:
        """Run one dummy batch of ``n`` frames of ``width`` x ``height`` through :meth:`stylise_on_device`
        once per shape, so that CUDA's lazy kernel loading, cuDNN's handles and, for a job of at least
        :data:`CUDNN_BENCHMARK_FRAMES` ``frames``, cuDNN's algorithm search happen before the pipeline
        starts, not in its first batch; the seconds it took add to :attr:`warm_s`."""
        search = frames is not None and frames >= CUDNN_BENCHMARK_FRAMES
        if (n, height, width, search) in self._warm_shapes:
            return
        torch.backends.cudnn.benchmark = search
        t0 = time.perf_counter()
        with torch.inference_mode():
            self.stylise_on_device(torch.zeros((n, 3, height, width), device=self.device))
        torch.cuda.synchronize(self.device)
        self._warm_shapes.add((n, height, width, search))
        self.warm_s += time.perf_counter() - t0

    def _batch_module(self) -> torch.nn.Module:
        """The module the GPU path runs (:meth:`stylise_on_device`: file jobs' batches and live frames): the
        backend's eager generator where it keeps one, else :attr:`module` (also when something replaced it:
        ``--compile``'s plain module, a test's). TorchScript's profiling executor profiles, fuses and
        compiles kernels on the first calls of each new input shape: a 150-frame 1080p job ran 39.9 fps
        scripted and 58.9 fps eager on an H200 (``bench/gpu.py``), where the model is not the bound."""
        eager = getattr(self.backend, "eager", None)
        return self.module if eager is None or self.module is not getattr(self.backend, "module", None) else eager

    def _prepare_compiled(self, n: int, w: int, h: int, frames: int | None) -> None:
        """Decide whether batches of ``n`` frames of ``w`` x ``h`` run compiled (see :meth:`fit_batch`)."""
        from . import compiled

        orig = getattr(self.module, "_orig_mod", None)  # torch.compile's wrapper: the backend compiled it
        if orig is not None:  # keep the plain module for short jobs; share one compiled module per style
            key = (str(self.net.path), self.precision, str(self.device))
            self._compiled_module = compiled.compiled_module(key, orig, compile_fn=lambda _m: self.module)
            self.module, self._compile_key = orig, key
        if self._compiled_module is None:
            return
        shape = (n, 3, h, w)
        use, self.compile_note = compiled.worth_compiling(frames, w, h, compiled.is_warm(self._compile_key, shape))
        self._compiled_shape = shape if use else None
        if use:
            self.compile_s += compiled.warm(self._compile_key, self._compiled_module, shape, self.dtype, self.device)

    def _buffers_for(self, height: int, width: int) -> _Buffers:
        key = (height, width)
        buf = self._buffers.get(key)
        if buf is None:
            w, h = inference_size(width, height, self.max_side)
            self._check_memory(w, h)
            pin = self.device.type == "cuda"
            buf = _Buffers(
                small=torch.empty((h, w, 3), dtype=torch.uint8, pin_memory=pin).numpy(),  # pinned: async upload
                out_f32=torch.empty((1, 3, h, w), dtype=torch.float32, device=self.device),
                out_u8=torch.empty((1, h, w, 3), dtype=torch.uint8, pin_memory=pin),
                full=np.empty((height, width, 3), np.uint8),
            )
            self._buffers = {key: buf}  # one resolution at a time: a stream rarely changes size
        return buf

    def inference_shape(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) this engine runs the model at for a frame of that size."""
        return inference_size(width, height, self.max_side)

    def decode_shape(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) a file job should decode frames at: the inference size, so that decoding scales
        them for free, or on a GPU the frame's own size (the GPU resizes them)."""
        return (width, height) if self.resizes_on_device else self.inference_shape(width, height)

    def run_batch(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Stylise same-size frames in one model call where that pays (a GPU); the results are reused by
        the next call but one. See :meth:`submit`."""
        return self.submit(frames)()

    def submit(self, frames: list[np.ndarray]) -> Callable[[], list[np.ndarray]]:
        """Start stylising ``frames`` (RGB uint8, all the same size) and return a function that waits for
        and returns the results. On a GPU the work is queued asynchronously: a caller can submit the next
        batch before collecting this one, so uploads, compute and downloads overlap; each result array
        stays valid until the next call but one. On the CPU the frames are stylised one by one at once."""
        if not self.resizes_on_device:
            results = [self(frame).copy() for frame in frames]
            return lambda: results
        return self._submit_on_device(frames, pad_to=self.batch_size)

    def _slot(self, n: int, height: int, width: int) -> _DeviceSlot:
        key = (n, height, width)
        if self._slot_key != key:
            if n > batching.index_limited_batch(self.net.architecture, *inference_size(width, height, self.max_side)):
                self._auto_batch(width, height)  # refuses a frame that cannot run even alone
                raise OutOfMemoryError(f"a batch of {n} frames of {width}x{height} passes torch's 32-bit GPU "
                                       f"indexing: use --batch {self._auto_batch(width, height)} or less")
            self._check_memory(*inference_size(width, height, self.max_side), frames=n)
            cuda = self.device.type == "cuda"
            self._slots = [_DeviceSlot(
                host_in=torch.zeros((n, height, width, 3), dtype=torch.uint8, pin_memory=cuda),
                dev_in=torch.empty((n, height, width, 3), dtype=torch.uint8, device=self.device),
                host_out=torch.empty((n, height, width, 3), dtype=torch.uint8, pin_memory=cuda),
                uploaded=torch.cuda.Event() if cuda else None, done=torch.cuda.Event() if cuda else None)
                for _ in range(2)]
            self._slot_key, self._next_slot = key, 0
            self._copy_stream = torch.cuda.Stream(self.device) if cuda else None
        slot = self._slots[self._next_slot]
        self._next_slot ^= 1
        return slot

    @torch.inference_mode()
    def stylise_on_device(self, x: torch.Tensor) -> torch.Tensor:
        """The GPU path's arithmetic: N x 3 x H x W RGB floats in [0, 255] on this engine's device (consumed:
        changed in place) resized to the inference size (area-like antialiasing), stylised, resized back
        (bilinear), returned as floats in [0, 255], not rounded. With ``--compile`` the compiled module runs
        the batch shape :meth:`fit_batch` warmed it for (a smaller last batch is padded to it); any other
        shape runs the plain module rather than compiling again (a first call decides as a job of unknown
        length would)."""
        import torch.nn.functional as F

        n, _, height, width = x.shape
        w, h = inference_size(width, height, self.max_side)
        if (h, w) != (height, width):
            x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        x = x.mul_(1 / 127.5).sub_(1.0).to(self.dtype)
        if self._compiled_shape is None and not self.compile_note:
            self._prepare_compiled(n, w, h, None)
        shape = self._compiled_shape
        if shape is not None and shape[2:] == (h, w) and n <= shape[0]:
            pad = x.new_zeros((shape[0] - n, 3, h, w))
            y = self._compiled_module(torch.cat([x, pad]) if n < shape[0] else x)[:n].float()
        else:
            y = self._batch_module()(x).float()
        if (h, w) != (height, width):
            y = F.interpolate(y, size=(height, width), mode="bilinear", align_corners=False)
        return y.add_(1.0).mul_(127.5).clamp_(0, 255)

    @torch.inference_mode()
    def _submit_on_device(self, frames: list[np.ndarray], pad_to: int = 1) -> Callable[[], list[np.ndarray]]:
        """``pad_to``: a batch of fewer frames runs padded to that many (a file job's last), so that a job
        runs one shape from start to end (see :meth:`stream.devicejob.PlaneEngine.submit`)."""
        height, width = frames[0].shape[:2]
        if any(f.shape != frames[0].shape for f in frames) or frames[0].dtype != np.uint8 or frames[0].ndim != 3:
            raise ValueError("a batch is H x W x 3 uint8 RGB frames, all of one size")
        slot = self._slot(max(len(frames), pad_to), height, width)
        slot.wait()  # this slot's previous results have been collected and copied out
        host = slot.host_in.numpy()
        for i, frame in enumerate(frames):
            np.copyto(host[i], frame)
        if self._copy_stream is not None:  # upload on its own stream: it overlaps the previous batch's compute
            compute = torch.cuda.current_stream(self.device)
            with torch.cuda.stream(self._copy_stream):
                slot.dev_in.copy_(slot.host_in, non_blocking=True)
                slot.uploaded.record()
            compute.wait_event(slot.uploaded)
        else:
            slot.dev_in.copy_(slot.host_in)
        out = self.stylise_on_device(slot.dev_in.permute(0, 3, 1, 2).float())
        slot.host_out.copy_(out.round_().to(torch.uint8).permute(0, 2, 3, 1), non_blocking=slot.done is not None)
        if slot.done is not None:
            slot.done.record(torch.cuda.current_stream(self.device))
        result = slot.host_out.numpy()

        def collect() -> list[np.ndarray]:
            slot.wait()
            return [result[i] for i in range(len(frames))]

        return collect

    def reset(self) -> None:
        """Forget earlier frames (an unrelated picture or stream follows): the INT8 backend starts a
        frame from the ranges its previous frame needed, so a picture's output would otherwise depend,
        within INT8's rounding, on what came before it."""
        reset = getattr(self.backend, "reset", None)
        if reset is not None:
            reset()

    @torch.inference_mode()
    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Stylise one RGB uint8 H x W x 3 frame. The returned array is reused by the next call."""
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an H x W x 3 uint8 RGB frame, got {frame.dtype} {frame.shape}")
        if self.resizes_on_device:
            return self._submit_on_device([frame])()[0]
        height, width = frame.shape[:2]
        if torch.get_num_threads() != self.threads:  # another style's engine may have changed it
            torch.set_num_threads(self.threads)
        with self._lock:
            buf = self._buffers_for(height, width)
            h, w = buf.small.shape[:2]
            if (h, w) == (height, width):
                np.copyto(buf.small, frame)
            else:
                _resize(frame, buf.small)
            src = torch.from_numpy(buf.small).permute(2, 0, 1).unsqueeze(0)
            try:
                buf.out_f32.copy_(self.backend(src))
            except (MemoryError, RuntimeError) as e:  # torch.OutOfMemoryError is a RuntimeError
                if not isinstance(e, MemoryError) and "memory" not in str(e).lower():
                    raise
                raise OutOfMemoryError(f"out of memory running the model at {w}x{h}: cap the size it runs at "
                                       "(max_side)") from None
            buf.out_f32.add_(1.0).mul_(127.5).clamp_(0, 255).round_()
            buf.out_u8.copy_(buf.out_f32.permute(0, 2, 3, 1))
            result = buf.out_u8[0].numpy()
            if (h, w) == (height, width):
                np.copyto(buf.full, result)
            else:
                _resize(result, buf.full)
            return buf.full
