"""A GPU file job's frames as YUV planes end to end: the host never holds an RGB picture.

    decode thread    packet -> decoder planes (``VideoFrame.to_ndarray()``: one copy, no swscale)
    device thread    upload planes -> RGB -> resize -> stylise -> resize back -> yuv420p (:mod:`stream.yuv`),
                     a batch at a time, downloads overlapping the next batch; with ``--deflicker`` the
                     flow from the luma planes first, and the filter after the model
                     (:mod:`stream.devicedeflicker`)
    encode thread    planes -> ``av.VideoFrame`` -> x264 (frame-threaded, every host core)

These are :class:`~stream.pipeline.Pipeline`'s three threads and bounded queues; this module supplies
its source (:class:`PlaneSource`), its batch engine (:class:`PlaneEngine`) and its sink
(:class:`PlaneSink`). :func:`plane_path` says whether a job can take this path: an engine that
resizes on its device (or :class:`~stream.deflicker.Deflicker` around one), a stream in one of :data:`stream.yuv.FORMATS` with even sides and no display
turn, and an output that takes yuv420p. Anything else runs today's RGB path.
An engine on the CPU can run this path too (tests do: ``engine.resizes_on_device = True``); setting
``engine.planes_on_device = False`` keeps such an engine on the RGB path.
"""
from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from . import yuv
from .deflicker import Deflicker
from .devicedeflicker import DeviceDeflicker
from .engine import Engine, FrameEngine
from .errors import SinkError
from .sinks import DEFAULT_CRF, VideoFileSink
from .sources import Frame, VideoSource
from .yuv import PlaneFormat

HARDWARE_ENCODERS = ("h264_nvenc",)  # tried in order by encoder "auto"; data-centre GPUs (H100, H200) have none
# NVIDIA's GPUs with no video encoder: encoder "auto" does not try NVENC on them (FFmpeg would open a CUDA
# context of its own, host memory and time, only to fail); a name outside this list is tried.
NO_VIDEO_ENCODER = ("A100", "A800", "A30", "H100", "H800", "H200", "H20", "B100", "B200", "GH200", "GB200")
ENCODERS = ("auto", "libx264", *HARDWARE_ENCODERS)
PLANE_OUTPUTS = frozenset({".mp4", ".mkv", ".mov", ".m4v", ".webm", ".avi"})  # yuv420p encoders (not GIF)
HOST_THREADS = os.cpu_count() or 1


def _plane_parts(engine: FrameEngine) -> tuple[Engine, Deflicker | None] | None:
    """The :class:`Engine` that would run a plane job of ``engine``, and the ``--deflicker`` filter wrapped
    around it (None: no filter), or None when ``engine`` cannot run the plane path."""
    steady = engine if isinstance(engine, Deflicker) else None
    core = steady.engine if steady is not None else engine
    if (isinstance(core, Engine) and core.resizes_on_device and core.module is not None
            and getattr(core, "planes_on_device", True)):
        return core, steady
    return None


def wants_planes(engine: FrameEngine, dst: str | Path) -> bool:
    """Whether a job of ``engine`` (an engine that resizes on its device, or :class:`Deflicker` around one)
    into ``dst`` should decode to planes (the stream decides the rest)."""
    return _plane_parts(engine) is not None and Path(dst).suffix.lower() in PLANE_OUTPUTS


def plane_core(engine: FrameEngine) -> Engine | None:
    """The :class:`Engine` whose model a plane job of ``engine`` runs (inside a :class:`Deflicker`), or None."""
    parts = _plane_parts(engine)
    return parts[0] if parts is not None else None


class PlaneSource(VideoSource):
    """A :class:`~stream.sources.VideoSource` whose frames' ``image`` is the decoder's packed planes
    (:attr:`plane_format`'s layout) instead of RGB, when the stream allows (:attr:`plane_format` not
    None: a format of :data:`stream.yuv.FORMATS`, even sides, no display turn); else RGB as usual.
    A frame that arrives in another pixel format than the stream announced is converted to it (swscale)."""

    def __init__(self, path: str | Path, **kwargs):
        super().__init__(path, **kwargs)
        ctx = self.video.codec_context
        fmt = yuv.plane_format_of(ctx.pix_fmt or "", int(ctx.colorspace or 2), int(ctx.color_range or 0))
        even = self.width % 2 == 0 and self.height % 2 == 0
        self.plane_format: PlaneFormat | None = fmt if fmt is not None and even and not self.quarter_turns else None

    def _frame(self, frame: av.VideoFrame) -> Frame:
        fmt = self.plane_format
        if fmt is None:
            return super()._frame(frame)
        if frame.format.name != fmt.name or (frame.width, frame.height) != (self.width, self.height):
            frame = frame.reformat(width=self.width, height=self.height, format=fmt.name)
        planes = frame.to_ndarray()
        if fmt.bits > 8:
            planes = planes.view(np.int16)  # 10-bit values in uint16: torch reads them as int16
        self.frames_read += 1
        pts = frame.pts
        if pts is not None and self.start > 0 and self.segment is None:
            pts -= self._windows[self.video.index].shift
        return Frame(self.frames_read - 1, planes, pts, self.time_base, time.perf_counter())


@functools.cache
def encoder_opens(name: str, width: int, height: int) -> bool:
    """Whether the encoder ``name`` opens for yuv420p frames of ``width`` x ``height`` here (PyAV's wheel
    lists NVENC everywhere; it opens only with an NVIDIA driver and a GPU that has the video engine)."""
    try:
        ctx = av.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = width, height, "yuv420p", Fraction(1, 30)
        ctx.open()
    except (av.error.FFmpegError, ValueError, OSError):  # UnknownCodecError is a ValueError
        return False
    return True


def gpu_without_encoder() -> bool:
    """Whether this process's CUDA GPU is one of :data:`NO_VIDEO_ENCODER` (False without a CUDA GPU)."""
    if not torch.cuda.is_available():
        return False
    name = torch.cuda.get_device_name()
    return any(re.search(rf"\b{model}\b", name) for model in NO_VIDEO_ENCODER)


def hardware_options(name: str, crf: int) -> dict[str, str]:
    """Options giving a hardware encoder about x264's quality at ``crf`` (constant quality, no bitrate cap)."""
    return {"preset": "p5", "rc": "vbr", "cq": str(crf), "b": "0"} if name == "h264_nvenc" else {}


def pick_encoder(requested: str, width: int, height: int) -> str:
    """The video encoder for ``requested`` (one of :data:`ENCODERS`): ``auto`` is the first of
    :data:`HARDWARE_ENCODERS` that opens, else libx264, silently; a hardware encoder named outright that
    does not open is a one-line :class:`~stream.errors.SinkError`."""
    if requested not in ENCODERS:
        raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, not {requested!r}")
    if requested == "libx264":
        return requested
    if requested == "auto":
        if gpu_without_encoder():
            return "libx264"
        return next((name for name in HARDWARE_ENCODERS if encoder_opens(name, width, height)), "libx264")
    if not encoder_opens(requested, width, height):
        raise SinkError(f"encoder {requested}: it does not open here (no such GPU encoder); use libx264 or auto")
    return requested


def hardware_encoder(requested: str, width: int, height: int, crf: int) -> tuple[str, dict[str, str]] | None:
    """For a job whose frames reach the encoder as RGB (the CPU path): the hardware encoder and its options
    that ``requested`` names outright (a one-line :class:`~stream.errors.SinkError` when it does not open),
    else None, libx264 (``auto`` tries no hardware there: probing it costs a CUDA context); a name outside
    :data:`ENCODERS` is :func:`pick_encoder`'s ValueError."""
    if requested in ("auto", "libx264"):
        return None
    name = pick_encoder(requested, width, height)
    return name, hardware_options(name, crf)


class PlaneSink(VideoFileSink):
    """A :class:`~stream.sinks.VideoFileSink` fed packed ``yuv420p`` frames of the video's own size, its
    encoder frame-threaded over every host core (x264's sliced threads, PyAV's default, encode slower),
    or a hardware encoder that opens (``encoder``: see :func:`pick_encoder`; WebM stays VP9)."""

    def __init__(self, target: str | Path, *, encoder: str = "auto", **kwargs):
        kwargs.setdefault("threads", HOST_THREADS)
        name = pick_encoder(encoder, kwargs["width"], kwargs["height"])
        self.encoder = name
        if name != "libx264":
            kwargs["hardware"] = (name, hardware_options(name, kwargs.get("crf", DEFAULT_CRF)))
        super().__init__(target, **kwargs)
        ctx = self._video.codec_context
        if self._video.pix_fmt != "yuv420p":
            self.close(keep=False)
            raise ValueError(f"a plane sink writes yuv420p, not {self._video.pix_fmt}")
        ctx.thread_type = "FRAME"

    def write(self, frame: Frame, image: np.ndarray) -> None:
        """Encode ``image``, packed yuv420p ((H * 3/2) x W uint8), at ``frame``'s timestamp."""
        self._encode(av.VideoFrame.from_ndarray(image, format="yuv420p"), frame)


@dataclass
class _Slot:
    """Pinned host buffers and device buffers for one batch (two alternate, as in the engine's RGB path)."""

    host_in: torch.Tensor  # N x packed input shape, pinned
    dev_in: torch.Tensor
    dev_out: torch.Tensor  # N x (H * 3/2) x W uint8
    host_out: torch.Tensor  # the same, pinned
    host_flow: torch.Tensor | None  # --deflicker: N x sh x sw x 2 float32, pinned (DeviceDeflicker.flows)
    dev_flow: torch.Tensor | None
    uploaded: torch.cuda.Event | None
    done: torch.cuda.Event | None

    def wait(self) -> None:
        if self.done is not None:
            self.done.synchronize()


class PlaneEngine:
    """Stylise batches of packed decoder planes into packed yuv420p with ``engine``'s model, all on its
    device (:class:`~stream.pipeline.BatchEngine`; also callable on one frame). Frames are ``height`` x
    ``width`` pixels in ``fmt``, of one video from its first frame on; ``deflicker``: the temporal filter's
    settings, run on the device (:class:`~stream.devicedeflicker.DeviceDeflicker`). Not thread-safe: the
    pipeline's device thread calls it."""

    def __init__(self, engine: Engine, fmt: PlaneFormat, width: int, height: int,
                 deflicker: Deflicker | None = None):
        self.engine, self.fmt, self.width, self.height = engine, fmt, width, height
        self.batch_size = engine.batch_size
        self.device = engine.device
        self.steady = (DeviceDeflicker(deflicker, width, height, self.device, fmt.full_range)
                       if deflicker is not None else None)
        self._slots: list[_Slot] = []
        self._key: int | None = None
        self._next = 0
        self._copy_stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    def _slot(self, n: int) -> _Slot:
        if self._key != n:
            cuda = self.device.type == "cuda"
            dtype = torch.int16 if self.fmt.bits > 8 else torch.uint8
            shape_in = (n, *self.fmt.packed_shape(self.width, self.height))
            shape_out = (n, self.height * 3 // 2, self.width)
            shape_flow = (n, *self.steady.small[::-1], 2) if self.steady is not None else None
            self._slots = [_Slot(
                host_in=torch.zeros(shape_in, dtype=dtype, pin_memory=cuda),  # a padded first batch reads zeros
                dev_in=torch.empty(shape_in, dtype=dtype, device=self.device),
                dev_out=torch.empty(shape_out, dtype=torch.uint8, device=self.device),
                host_out=torch.empty(shape_out, dtype=torch.uint8, pin_memory=cuda),
                host_flow=torch.zeros(shape_flow, pin_memory=cuda) if shape_flow else None,
                dev_flow=torch.empty(shape_flow, device=self.device) if shape_flow else None,
                uploaded=torch.cuda.Event() if cuda else None, done=torch.cuda.Event() if cuda else None)
                for _ in range(2)]
            self._key, self._next = n, 0
        slot = self._slots[self._next]
        self._next ^= 1
        return slot

    @torch.inference_mode()
    def submit(self, frames: list[np.ndarray]) -> Callable[[], list[np.ndarray]]:
        """Start a batch of packed frames; the returned function waits for and returns packed yuv420p
        results, valid until the next call but one. A batch shorter than :attr:`batch_size` (a video's
        last) runs padded to it (the rows after its frames hold an earlier batch's, and are dropped), so
        the device sees one shape from the job's first batch to its last: no new kernel selection,
        algorithm search or compilation at the end of a job."""
        slot = self._slot(max(len(frames), self.batch_size))
        slot.wait()  # its previous results have been collected and copied out
        host, n = slot.host_in.numpy(), len(frames)
        for i, planes in enumerate(frames):
            np.copyto(host[i], planes)
        if self.steady is not None:  # the flow on the host, while the device runs the batch before
            self.steady.flows([self._luma(planes) for planes in frames], slot.host_flow.numpy())
        pairs = [(slot.dev_in, slot.host_in)] + ([(slot.dev_flow, slot.host_flow)] if self.steady else [])
        if self._copy_stream is not None:  # upload on its own stream: it overlaps the previous batch's compute
            with torch.cuda.stream(self._copy_stream):
                for dev, pinned in pairs:
                    dev.copy_(pinned, non_blocking=True)
                slot.uploaded.record()
            torch.cuda.current_stream(self.device).wait_event(slot.uploaded)
        else:
            for dev, pinned in pairs:
                dev.copy_(pinned)
        rgb = yuv.to_rgb(slot.dev_in, self.fmt, self.height, self.width)
        small = self.steady.shrink(rgb[:n]) if self.steady is not None else None  # before the model consumes rgb
        styled = self.engine.stylise_on_device(rgb)
        if self.steady is not None:
            self.steady.apply(small, styled, slot.dev_flow[:n])
        yuv.to_yuv420p(styled, out=slot.dev_out)
        slot.host_out.copy_(slot.dev_out, non_blocking=slot.done is not None)
        if slot.done is not None:
            slot.done.record(torch.cuda.current_stream(self.device))
        result = slot.host_out.numpy()

        def collect() -> list[np.ndarray]:
            slot.wait()
            return [result[i] for i in range(n)]

        return collect

    def __call__(self, planes: np.ndarray) -> np.ndarray:
        return self.submit([planes])()[0]

    def _luma(self, planes: np.ndarray) -> np.ndarray:
        """The Y plane (H x W) of one packed frame (a view)."""
        return planes[0] if not self.fmt.subsampled else planes[:self.height]

    def warm(self) -> None:
        """One batch of black frames through every step, so that the pinned buffers are allocated and the
        conversions' kernels loaded before the job's pipeline starts (the engine warmed the model). The
        temporal filter, if any, starts afresh after it: the video's first frame has no history."""
        shape = self.fmt.packed_shape(self.width, self.height)
        black = np.zeros(shape, np.int16 if self.fmt.bits > 8 else np.uint8)
        self.submit([black] * self.batch_size)()
        if self.steady is not None:
            self.steady.restart()


def plane_path(engine: FrameEngine, source: VideoSource) -> PlaneEngine | None:
    """The batch engine for a job whose ``source`` delivers planes (a :class:`PlaneSource` that could), else
    None; ``engine`` may be a :class:`Deflicker` around the engine, whose filter then runs on the device."""
    fmt, parts = getattr(source, "plane_format", None), _plane_parts(engine)
    if fmt is None or parts is None:
        return None
    engine, steady = parts
    planes = PlaneEngine(engine, fmt, source.width, source.height, steady)
    if engine.device.type == "cuda":
        planes.warm()
    return planes
