"""How many frames one model call on a GPU may take: the automatic batch, and the limit it never crosses.

Two things bound a batch of N frames that the model runs at ``width`` x ``height`` pixels:

- memory: about ``bytes_per_pixel`` bytes of activations per input pixel per frame (the engine's
  measured figure), and the batch may take a share of the device's free memory;
- torch's 32-bit index math: many CUDA kernels (reflection padding first among them) refuse a tensor
  of more than 2^31 - 1 elements, so N x the widest activation of the generator must stay below it.
  At 1920x1080 the widest is block_e's first padded input (128 channels at full size, 266 M elements),
  so 16 frames fail and 8 do not.

Everything here is pure arithmetic on the generator's architecture (:meth:`stream.model.Generator.architecture`
form: ``width``, ``blocks``, ``skip``, ``upsample``, ``guided_filter``); nothing is allocated.
"""
from __future__ import annotations

from collections.abc import Callable

from .errors import OutOfMemoryError

INDEX_LIMIT = 2**31 - 1  # elements: the largest tensor torch's 32-bit-indexed CUDA kernels accept
MAX_AUTO_BATCH = 16  # frames per model call the automatic batch picks at most
BATCH_MEMORY_SHARE = 0.5  # of the free device memory, what a batch's activations may take
# Pixels per model call the automatic batch stops at: 16 frames of 512x512. A larger frame fills the GPU
# alone (full-resolution 1080p ran at 25.8 fps at batch 1 and 20.0 at batch 4, ../shared/gpu/README.md).
MAX_BATCH_PIXELS = 16 * 512 * 512
# Full-size frame pixels per batch the automatic batch stops at: 8 frames of 1080p. A batch's frames are held
# on the host about eight times over (the decode and result queues, each two batches deep, the buffer pool, two
# pinned upload and two download slots): 16 frames of 4K held about 2 GB there, 16 of 1080p over 500 MB of a
# 2 GB budget. 8 frames of 512x288 keep an H200 far ahead of the encoder (batching gains nothing past that).
MAX_BATCH_FRAME_PIXELS = 8 * 1920 * 1080
SIDE_STEP = 4  # pixels: inference sides are multiples of this (see stream.engine.SIDE_MULTIPLE)


def channels(arch: dict) -> tuple[int, int, int, int]:
    """The generator's channel counts at full, half and quarter size (c32, c64, c128, c256), scaled by
    the architecture's width multiplier as :class:`stream.model.Generator` scales them."""
    width = float(arch.get("width", 1.0))
    c32, c64, c128, c256 = (max(8, int(round(c * width))) for c in (32, 64, 128, 256))
    return c32, c64, c128, c256


def widest_activation(arch: dict, width: int, height: int) -> int:
    """Elements of the largest tensor one frame of ``width`` x ``height`` pixels makes in the generator,
    reflection padding included (the padded copy is a tensor of its own)."""
    c32, c64, c128, c256 = channels(arch)
    blocks = int(arch.get("blocks", 4))
    h2, w2 = (height + 1 - 3) // 2 + 1, (width + 1 - 3) // 2 + 1  # stride-2 convolution of a (0, 1)-padded input
    h4, w4 = (h2 + 1 - 3) // 2 + 1, (w2 + 1 - 3) // 2 + 1
    full = [3 * (height + 6) * (width + 6),  # the 7x7 input convolution's padded input
            c32 * (height + 1) * (width + 1),  # block_a's stride-2 input, padded
            c128 * (height + 2) * (width + 2),  # block_e's first input: block_d upsampled to full size, padded
            c64 * (height + 6) * (width + 6)]  # block_e's 7x7 convolution's padded input
    half = [c64 * (h2 + 2) * (w2 + 2), c64 * (h2 + 1) * (w2 + 1), c128 * (h2 + 2) * (w2 + 2)]
    hidden = 2 * (c256 if blocks > 1 else c128)  # the inverted residual blocks' expanded channels
    quarter = [max(c128, c256 if blocks else c128) * (h4 + 2) * (w4 + 2), hidden * (h4 + 2) * (w4 + 2)]
    guided = arch.get("guided_filter") or {}
    extra = [12 * height * width] if guided.get("radius") else []  # the guided filter's four stacked means
    if arch.get("skip"):
        extra.append(6 * height * width)  # [x, x * x] for the colour grade
    return max(full + half + quarter + extra)


def index_limited_batch(arch: dict, width: int, height: int) -> int:
    """The most frames of that size one call may take before an intermediate passes :data:`INDEX_LIMIT`
    (0: not even one frame fits)."""
    return INDEX_LIMIT // widest_activation(arch, width, height)


def largest_side_that_fits(arch: dict, width: int, height: int,
                           size_for: Callable[[int, int, int], tuple[int, int]]) -> int:
    """The largest ``max_side`` (a multiple of :data:`SIDE_STEP`, pixels) at which one frame of ``width``
    x ``height`` fits the index limit; ``size_for(width, height, max_side)`` is the engine's
    :func:`~stream.engine.inference_size`."""
    lo, hi = SIDE_STEP, max(width, height) // SIDE_STEP * SIDE_STEP
    while lo < hi:  # the widest activation grows with the cap: bisect on it
        mid = (lo + hi + SIDE_STEP) // 2 // SIDE_STEP * SIDE_STEP
        if index_limited_batch(arch, *size_for(width, height, mid)) >= 1:
            lo = mid
        else:
            hi = mid - SIDE_STEP
    return lo


def frame_too_large(arch: dict, width: int, height: int, suggestion: int) -> OutOfMemoryError:
    """The one-line refusal for a frame whose model run cannot fit the index limit even alone."""
    elements = widest_activation(arch, width, height)
    return OutOfMemoryError(f"a {width}x{height} frame makes a {elements / 1e9:.2f} G-element tensor in the model, "
                            f"more than torch's GPU kernels index (2^31): use --max-side {suggestion} or less")


def auto_batch(arch: dict, width: int, height: int, *, bytes_per_pixel: float, free_bytes: int | None,
               requested: int = 0, max_batch: int = MAX_AUTO_BATCH, share: float = BATCH_MEMORY_SHARE,
               frame_pixels: int = 0) -> int:
    """Frames per model call for frames the model runs at ``width`` x ``height`` pixels.

    ``requested`` > 0 (a ``--batch`` given) is kept unless it passes the index limit, which lowers it;
    0 picks as many as ``share`` of ``free_bytes`` (None: unknown, taken as none spare) holds at
    ``bytes_per_pixel`` bytes of activations per pixel, at most ``max_batch`` frames,
    :data:`MAX_BATCH_PIXELS` pixels at the model's size and :data:`MAX_BATCH_FRAME_PIXELS` pixels at the
    frames' own size (``frame_pixels`` each; 0: the model's size), at least 1. Raises
    :class:`~stream.errors.OutOfMemoryError` (without a size suggestion: see :func:`frame_too_large`)
    when not even one frame fits the index limit.
    """
    limit = index_limited_batch(arch, width, height)
    if limit < 1:
        raise OutOfMemoryError(f"a {width}x{height} frame is too large for torch's 32-bit GPU indexing")
    if requested > 0:
        return min(requested, limit)
    per_frame = width * height * bytes_per_pixel
    by_memory = int((free_bytes or 0) * share // per_frame) if per_frame > 0 else max_batch
    by_pixels = MAX_BATCH_PIXELS // (width * height)
    by_host = MAX_BATCH_FRAME_PIXELS // max(frame_pixels, width * height)
    return max(1, min(max_batch, limit, by_memory, by_pixels, by_host))
