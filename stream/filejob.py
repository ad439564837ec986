"""File jobs: a video into a video, an image into an image, a folder into a folder.

Video jobs keep every frame, its timestamp, the resolution and the audio. Frames are decoded at the
engine's inference size and scaled back while they are encoded (both in swscale passes the codecs
need anyway), so the engine never resizes them. Output goes to a temporary file beside the target
and is renamed on success; on error nothing is left at the target.
On Ctrl-C the frames finished so far are flushed into a playable file and ``Stats.interrupted`` is set.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .devicejob import PlaneSink, PlaneSource, hardware_encoder, plane_core, plane_path, wants_planes
from .engine import Engine, FrameEngine
from .errors import AnimestreamError, SinkError, SourceError
from .imageinfo import DEFAULT_MAX_PIXELS
from .pipeline import Pipeline, Stats, peak_rss_mb
from .sinks import (ALPHA_EXTENSIONS, DEFAULT_CRF, DEFAULT_PRESET, VIDEO_EXTENSIONS, VideoFileSink,
                    check_output_path, encoder_threads, write_image)
from .sources import IMAGE_EXTENSIONS, VideoSource, is_image_path, read_image

Warn = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"animestream: {message}", file=sys.stderr)


def _engine_stats(engine: FrameEngine) -> dict:
    stats = {"device": str(engine.device), "precision": engine.precision, "max_side": engine.max_side,
             "style": engine.style}
    if isinstance(engine, Engine):
        stats.update(network=engine.net.name, batch=engine.batch_size, compile_s=round(engine.compile_s, 2),
                     warm_s=round(engine.warm_s, 2))
        if engine.compile_note:
            stats.update(compile=engine.compile_note)  # --compile skipped: the job is too short to earn it back
    return stats


def convert_video(src: str | Path, dst: str | Path, engine: FrameEngine, *, crf: int = DEFAULT_CRF,
                  preset: str = DEFAULT_PRESET, encoder: str = "auto", progress: bool = True, warn: Warn = _stderr,
                  start: float = 0.0, duration: float | None = None, keep_partial: bool = True,
                  strict: bool = False, on_progress: Callable[[int, int | None], None] | None = None,
                  cancel: threading.Event | None = None) -> Stats:
    """Stylise every frame of ``src`` into ``dst`` (same size, timestamps and audio), or only the
    ``duration`` seconds from ``start`` seconds on (None: to the end), timed from 0 in ``dst``.

    Interrupted (Ctrl-C, SIGTERM, SIGHUP), ``dst`` holds a playable file of the frames done so far, or,
    with ``keep_partial=False``, nothing at all (``Stats.frames_out`` still counts what was done).
    Frames that do not decode are skipped with a warning (``Stats.extra["undecodable"]``); with
    ``strict``, any damage is a :class:`SourceError` and nothing is written. ``on_progress(frames done,
    frames expected or None)`` is called a few times a second; setting ``cancel`` stops the job as Ctrl-C
    does (with ``keep_partial=False``: nothing written)."""
    dst = Path(dst)
    check_output_path(dst, str(src))
    if dst.suffix.lower() not in VIDEO_EXTENSIONS:
        raise SinkError(f"{dst}: a video output needs one of {', '.join(sorted(VIDEO_EXTENSIONS))}")
    engine.reset()  # a temporal filter must not carry one video's last frame into the next
    source = (PlaneSource if wants_planes(engine, dst) else VideoSource)(src, start=start, duration=duration)
    # the engine whose model runs the frames: on the plane path, the one inside --deflicker's filter too
    core = plane_core(engine) if getattr(source, "plane_format", None) is not None else engine
    # Decode straight at the model's size (the sink scales back), or, where the engine resizes on its
    # device (a GPU), at the frame's own size.
    shape = core.decode_shape if isinstance(core, Engine) else core.inference_shape
    source.frame_size = shape(source.width, source.height)
    audio_codec = source.audio.codec_context.name if source.audio is not None else None
    try:
        if isinstance(core, Engine):
            core.fit_batch(source.width, source.height, source.frame_count)  # sized for this video (a GPU)
        batch = engine if isinstance(engine, Engine) and engine.batch_size > 1 else None
        planes = plane_path(engine, source)  # a GPU's YUV path (stream.devicejob), or None
        sink_options = dict(width=source.width, height=source.height, time_base=source.time_base,
                            rate=source.rate, audio=source.audios, subtitles=source.subtitles, crf=crf,
                            preset=preset, threads=encoder_threads(engine.device))
        sink = (PlaneSink(dst, encoder=encoder, **sink_options) if planes
                else VideoFileSink(dst, hardware=hardware_encoder(encoder, source.width, source.height, crf),
                                   **sink_options))
        stats: Stats | None = None
        try:
            source.decode_streams = {i for i, mode in sink.audio_modes.items() if mode == "transcode"}
            with tqdm(total=source.frame_count, unit="frame", desc=Path(str(src)).name, disable=not progress,
                      file=sys.stderr, dynamic_ncols=True, leave=False) as bar:

                def finish(clean: bool) -> None:  # the consumer thread, the only one that muxes, closes the file
                    done, damaged = pipeline.stats, strict and (source.undecodable or source.truncated)
                    sink.close(keep=clean and done.frames_out > 0 and not damaged
                               and (keep_partial or not done.interrupted))

                pipeline = Pipeline(source, planes or engine, sink, batch=planes or batch, finish=finish)

                def tick(done: int) -> None:
                    bar.update(done - bar.n)
                    if on_progress is not None:
                        on_progress(done, source.frame_count)
                    if cancel is not None and cancel.is_set():
                        pipeline.stop(interrupted=True)

                stats = pipeline.run(on_progress=tick)
        finally:
            sink.close(keep=False)  # a no-op once the pipeline ran: its consumer closed the sink
    finally:
        source.close()
    if stats.frames_out == 0 and not stats.interrupted:
        if source.undecodable:
            raise SourceError(f"{src}: no video frame could be decoded ({source.undecodable} damaged packets: "
                              f"{source.damage})")
        if start > 0 and source.frames_read == 0 and not source.truncated:
            length = f" (the video is {source.length_s:.2f} s long)" if source.length_s else ""
            raise SourceError(f"{src}: no frame from {start:g} s on{length}")
        raise SourceError(f"{src}: no video frame could be decoded (damaged or cut short?)")
    if strict and (source.undecodable or source.truncated) and not stats.interrupted:
        what = (f"{source.undecodable} frames could not be decoded ({source.damage})" if source.undecodable
                else f"damaged after frame {source.frames_read} ({source.truncated})")
        raise SourceError(f"{src}: {what}; nothing written (strict)")
    if sink.dropped:
        warn(f"warning: {dst}: left out " + "; ".join(sink.dropped))
    if source.undecodable:
        warn(f"warning: {src}: {source.undecodable} frames could not be decoded ({source.damage}) and were "
             f"skipped; the {stats.frames_out} others keep their timestamps")
    if source.truncated:
        warn(f"warning: {src}: input is damaged after frame {source.frames_read} ({source.truncated}); "
             f"converted the {stats.frames_out} frames that decoded")
    stats.extra.update(_engine_stats(core), audio=sink.audio_mode or "none", audio_codec=audio_codec,
                       audio_tracks=len(sink.audio_modes), dropped_streams=list(sink.dropped),
                       undecodable=source.undecodable, truncated=bool(source.truncated))
    return stats


def convert_image(src: str | Path, dst: str | Path, engine: FrameEngine, *,
                  max_pixels: int = DEFAULT_MAX_PIXELS, warn: Warn = _stderr) -> Stats:
    """Stylise one image into ``dst`` (format from its extension). ``max_pixels``: see :func:`read_image`.

    The statistics are those of the whole job: ``wall_s`` from reading to the written file,
    ``latency_ms_*`` the time in the engine, ``fps`` one over the wall time."""
    dst = Path(dst)
    check_output_path(dst, str(src))
    if dst.suffix.lower() not in IMAGE_EXTENSIONS:
        raise SinkError(f"{dst}: an image output needs one of {', '.join(sorted(IMAGE_EXTENSIONS))}")
    t0 = time.perf_counter()
    image = read_image(src, max_pixels=max_pixels, keep_alpha=True)
    alpha = None
    if image.shape[2] == 4:  # the model styles RGB; the transparency is carried through untouched
        image, alpha = np.ascontiguousarray(image[..., :3]), image[..., 3]
    stats = Stats(frames_in=1)
    t1 = time.perf_counter()
    engine.reset()  # a picture of its own: its output must not depend on what the engine saw before
    result = engine(image)
    model_ms = round((time.perf_counter() - t1) * 1000, 1)
    if alpha is not None and dst.suffix.lower() in ALPHA_EXTENSIONS:
        result = np.dstack([result, alpha])
    elif alpha is not None:
        warn(f"warning: {dst}: left out the transparency ({dst.suffix.lstrip('.').upper()} has none; "
             f"{', '.join(sorted(ALPHA_EXTENSIONS))} keep it)")
    write_image(dst, result)
    stats.frames_out = 1
    stats.wall_s = round(time.perf_counter() - t0, 3)
    stats.fps = round(1 / stats.wall_s, 2) if stats.wall_s > 0 else 0.0
    stats.latency_ms_p50 = stats.latency_ms_p95 = model_ms
    stats.peak_rss_mb = round(peak_rss_mb(), 1)
    stats.extra.update(_engine_stats(engine), kind="image")
    return stats


def folder_inputs(src: Path, *, recursive: bool = True, skip: Path | None = None,
                  warn: Warn = _stderr) -> list[Path]:
    """The images and videos in ``src`` (and, with ``recursive``, its subfolders), sorted, as paths
    relative to ``src``. Hidden files and folders (an earlier run's ``.partial`` leftovers) are not
    inputs; nor is anything under ``skip`` (an output folder inside the input folder). Other files are
    named in one warning line."""
    found, ignored = [], []
    for folder, dirs, names in os.walk(src, onerror=lambda e: warn(f"warning: {e.filename}: cannot read it "
                                                                   f"({e.strerror})")):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (skip is None or (here / d).resolve() != skip)) \
            if recursive else []
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = here / name
            (found if path.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS else ignored).append(path.relative_to(src))
    if ignored:
        shown = ", ".join(str(p) for p in ignored[:3]) + (f" and {len(ignored) - 3} more" if len(ignored) > 3 else "")
        warn(f"warning: {src}: {len(ignored)} files are neither images nor videos and were left out: {shown}")
    return found


def convert_folder(src: str | Path, dst: str | Path, engine: FrameEngine, *, crf: int = DEFAULT_CRF,
                   preset: str = DEFAULT_PRESET, encoder: str = "auto", progress: bool = True, warn: Warn = _stderr,
                   max_pixels: int = DEFAULT_MAX_PIXELS, strict: bool = False, recursive: bool = True) -> Stats:
    """Convert every image and video in ``src`` and, with ``recursive``, its subfolders into ``dst``
    (created if missing), mirroring the folder tree.

    A file that fails is reported through ``warn`` and the rest go on; if any failed, a
    :class:`SourceError` naming the count is raised at the end.
    """
    src, dst = Path(src), Path(dst)
    if not dst.parent.is_dir():
        raise SinkError(f"{dst}: output folder {dst.parent} does not exist")
    if dst.exists() and not dst.is_dir():
        raise SinkError(f"{dst}: exists and is not a folder")
    if dst.resolve() == src.resolve():
        raise SinkError(f"{dst}: output folder is the input folder; choose another")
    files = folder_inputs(src, recursive=recursive, skip=dst.resolve(), warn=warn)
    if not files:
        raise SourceError(f"{src}: no images or videos in this folder" + (" or its subfolders" if recursive else ""))
    dst.mkdir(exist_ok=True)
    total, failed, done = Stats(), 0, 0
    for rel in tqdm(files, unit="file", disable=not progress or len(files) < 2, file=sys.stderr, leave=False):
        path, out = src / rel, dst / rel
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SinkError(f"{out.parent}: cannot create the folder ({e.strerror or e})") from None
        try:
            if is_image_path(path):
                one = convert_image(path, out, engine, max_pixels=max_pixels, warn=warn)
            else:
                one = convert_video(path, out, engine, crf=crf, preset=preset, encoder=encoder, progress=progress,
                                    warn=warn, keep_partial=False, strict=strict)  # complete files only
        except AnimestreamError as e:
            warn(f"error: {e}")
            failed += 1
            continue
        if one.interrupted:  # that file was not kept
            total.interrupted = True
            break
        total.frames_in += one.frames_in
        total.frames_out += one.frames_out
        total.wall_s += one.wall_s
        done += 1
    if failed and not total.interrupted:
        raise SourceError(f"{src}: {failed} of {len(files)} files failed (see above)")
    total.extra.update(_engine_stats(engine), files=len(files), files_done=done)
    return total


def convert(src: str | Path, dst: str | Path, engine: FrameEngine, *, crf: int = DEFAULT_CRF,
            preset: str = DEFAULT_PRESET, encoder: str = "auto", progress: bool = True, warn: Warn = _stderr,
            max_pixels: int = DEFAULT_MAX_PIXELS, strict: bool = False, recursive: bool = True) -> Stats:
    """Convert a video, an image or a folder, whichever ``src`` is."""
    path = Path(src)
    if path.is_dir():
        return convert_folder(path, dst, engine, crf=crf, preset=preset, encoder=encoder, progress=progress, warn=warn,
                              max_pixels=max_pixels, strict=strict, recursive=recursive)
    if is_image_path(path):
        return convert_image(path, dst, engine, max_pixels=max_pixels, warn=warn)
    return convert_video(src, dst, engine, crf=crf, preset=preset, encoder=encoder, progress=progress, warn=warn,
                         strict=strict)
