"""Live jobs: a camera, stream or paced file into any mix of preview window, virtual camera and recording.

Live pipelines never block capture: a frame that waits while a newer one arrives is dropped and
counted, so latency stays near one inference time however slow the model is.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .deflicker import Deflicker
from .engine import FrameEngine
from .errors import SinkError
from .live import PacedSource, StyleSwitcher, open_live_source
from .pipeline import Pipeline, Sink, Stats
from .sinks import DEFAULT_CRF, DEFAULT_PRESET, VideoFileSink, check_output_path, encoder_threads
from .sources import DEFAULT_STREAM_TIMEOUT_S, AudioItem, Frame, VideoSource, is_url

PREVIEW_TICK_S = 0.01  # how often the main thread redraws the preview and reads keys, seconds
RATE_WINDOW_S = 1.0  # the overlay's fps is averaged over this many seconds


@dataclass(frozen=True)
class LiveOptions:
    """What to capture and where to send it. Sizes in pixels, rates in frames per second."""

    output: Path | None = None
    preview: bool = False
    vcam: bool = False
    vcam_backend: str | None = None
    vcam_device: str | None = None
    vcam_fps: float = 0.0  # 0: the source's rate
    camera_width: int = 0
    camera_height: int = 0
    camera_fps: float = 30.0
    paced: bool = False  # network streams only: files are always played at their own pace
    crf: int = DEFAULT_CRF
    preset: str = DEFAULT_PRESET
    deflicker: bool = False  # blend in the previous result, moved with the input (stream.deflicker)
    timeout: float = DEFAULT_STREAM_TIMEOUT_S  # seconds without data after which a network stream has stalled
    mjpeg: tuple[str, int] | None = None  # (host, port) to serve the results as MJPEG (stream.mjpeg)


class Tee:
    """Hand every result to several sinks, in order."""

    def __init__(self, sinks: Sequence[Sink]):
        self.sinks = list(sinks)

    def write(self, frame: Frame, image: np.ndarray) -> None:
        for sink in self.sinks:
            sink.write(frame, image)

    def write_audio(self, item: AudioItem) -> None:
        for sink in self.sinks:
            sink.write_audio(item)


class _RateMeter:
    """Frames per second over the last :data:`RATE_WINDOW_S` seconds."""

    def __init__(self) -> None:
        self._marks: deque[tuple[float, int]] = deque()

    def __call__(self, frames: int) -> float:
        now = time.perf_counter()
        self._marks.append((now, frames))
        while len(self._marks) > 2 and now - self._marks[0][0] > RATE_WINDOW_S:
            self._marks.popleft()
        t0, f0 = self._marks[0]
        return (frames - f0) / (now - t0) if now > t0 else 0.0


def run_live(spec: str, switcher: StyleSwitcher, options: LiveOptions, *, announce=print) -> Stats:
    """Run a live job until the source ends, ``q`` in the preview, or Ctrl-C (``Stats.interrupted``).

    Everything the job opens (source, recorder, virtual camera, window) is closed on the way out,
    each even if closing another fails."""
    if not (options.output or options.preview or options.vcam or options.mjpeg):
        raise SinkError("a live run needs somewhere to go: an OUTPUT file, --preview, --vcam or --mjpeg")
    if options.output is not None:
        check_output_path(options.output, spec)
    # the filter prepares each blend on its own thread while the model runs: live frames wait ~1 ms for it
    job: FrameEngine = Deflicker(switcher, overlap=True) if options.deflicker else switcher
    stats: Stats | None = None
    camera = None
    pipeline: Pipeline | None = None
    with ExitStack() as closing:
        if isinstance(job, Deflicker):
            closing.callback(job.close)
        source = open_live_source(spec, width=options.camera_width, height=options.camera_height,
                                  fps=options.camera_fps, paced=options.paced, timeout=options.timeout)

        def close_source() -> None:
            if pipeline is None or not pipeline.source_abandoned:  # else its producer closes it
                source.close()

        closing.callback(close_source)
        announce(source.description)
        sinks: list[Sink] = []
        recorder: VideoFileSink | None = None
        if options.output is not None:
            recorder = VideoFileSink(options.output, width=source.width, height=source.height,
                                     time_base=source.time_base, rate=source.rate, crf=options.crf,
                                     preset=options.preset, threads=encoder_threads(job.device))
            closing.callback(lambda: recorder.close(keep=False))  # a no-op once the pipeline ran (see finish)
            sinks.append(recorder)
        if options.vcam:
            from .vcam import VirtualCamera
            camera = VirtualCamera(width=source.width, height=source.height,
                                   fps=options.vcam_fps or float(source.rate),
                                   backend=options.vcam_backend, device=options.vcam_device)
            closing.callback(camera.close)
            announce(f"virtual camera: {camera.device} @ {camera.fps:g} fps")
            sinks.append(camera)
        if options.mjpeg is not None:
            from .mjpeg import MjpegSink
            stream = MjpegSink(*options.mjpeg)
            closing.callback(stream.close)
            announce(f"MJPEG: {stream.url} (a browser, or OBS: Browser or Media Source)")
            sinks.append(stream)
        window = None
        if options.preview:
            from .preview import PreviewWindow
            meter = _RateMeter()

            def overlay_stats() -> tuple[float, float, int]:
                return meter(pipeline.stats.frames_out), pipeline.last_latency_ms, pipeline.stats.dropped

            def pick(index: int | None) -> str:
                return (switcher.next() if index is None else switcher.select(index)).style

            window = PreviewWindow(on_quit=lambda: pipeline.stop(), on_style=pick, stats=overlay_stats)
            closing.callback(window.close)
            window.style_name = switcher.style
            sinks.append(window)
        def finish(clean: bool) -> None:  # the consumer thread, the only one that muxes, closes the recording
            if recorder is not None:
                recorder.close(keep=clean and pipeline.stats.frames_out > 0)

        pipeline = Pipeline(source, job, Tee(sinks), drop_stale=True, finish=finish)
        if is_url(spec):  # a stalled network read must not hold Ctrl-C back (see Pipeline)
            pipeline.on_source_released = source.close
        if window is not None:
            stats = pipeline.run(on_progress=lambda _n: window.pump(), tick_s=PREVIEW_TICK_S)
        else:
            stats = pipeline.run()
    stats.extra.update(device=str(job.device), precision=job.precision, max_side=job.max_side, style=job.style,
                       vcam_frames=camera.frames_sent if camera is not None else 0)
    video = source.source if isinstance(source, PacedSource) else source
    if isinstance(video, VideoSource) and video.truncated and not stats.interrupted:
        announce(f"warning: {spec}: the stream ended early ({video.truncated})")
        stats.extra["stalled"] = video.truncated
    return stats
