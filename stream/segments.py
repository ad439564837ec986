"""A long video in pieces: cut at key frames, each piece converted on its own, joined by stream copy.

This is how ``animestream batch`` spreads one film over many workers. The plan (:func:`plan`) cuts at
key frames, so each piece decodes on its own; a piece (:func:`convert_piece`) holds the stylised
pictures of its key-frame interval with their original timestamps and no sound, encoded without
B-frames (each packet's decoding time is its presentation time, so pieces encoded apart line up);
:func:`join` copies the pieces' packets one after the other and takes every sound and subtitle track
from the original, copied or re-encoded exactly as a single-process conversion does. The result has the
frames, timestamps and sound of ``animestream in.mp4 out.mp4``. With a temporal filter (``--deflicker``) a
piece after the first also decodes from an earlier key frame (:attr:`Piece.warm`) and runs the filter over
up to :data:`PREROLL_FRAMES` pictures before its own, writing none of them, so that its history does not
start cold at the cut.
"""
from __future__ import annotations

import heapq
import sys
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av

from .engine import FrameEngine
from .errors import SinkError, SourceError
from .pipeline import Pipeline, Stats
from .sinks import DEFAULT_CRF, DEFAULT_PRESET, VideoFileSink, check_output_path, encoder_threads
from .sources import AudioItem, Frame, VideoSource


PREROLL_FRAMES = 30  # a temporal filter's warm-up before a piece's first picture (0.9 ** 30: ~4% left)
PREROLL_S = 1.0  # decoding for it starts at the last key frame at least this long before the piece


@dataclass(frozen=True)
class Piece:
    """Pictures with pts in ``[first, end)`` (the video stream's own ticks; ``end`` None: to the end).
    ``warm``: the key frame (pts) a piece after the first may start decoding from, so that a temporal
    filter (``--deflicker``) has seen the pictures before it (None: from ``first``)."""

    index: int
    first: int
    end: int | None
    warm: int | None = None

    def name(self, dst: Path) -> Path:
        """Where this piece of ``dst`` is written (beside it, hidden)."""
        return dst.with_name(f".{dst.stem}.piece{self.index:04d}{dst.suffix}")


def key_frames(src: str | Path) -> tuple[list[int], float, float]:
    """(key frame pts in presentation order, the video's ticks per second, its length in seconds)."""
    try:
        with av.open(str(src)) as container:
            video = container.streams.video[0]
            ticks = [p.pts for p in container.demux(video) if p.is_keyframe and p.pts is not None]
            tb = video.time_base
            length = float(video.duration * tb) if video.duration else (container.duration or 0) / av.time_base
    except (av.error.FFmpegError, IndexError) as e:
        raise SourceError(f"{src}: cannot read its key frames ({e})") from None
    return sorted(set(ticks)), float(1 / tb), length


def plan(src: str | Path, seconds: float) -> list[Piece]:
    """Pieces of about ``seconds`` each, cut at the first key frame at or after each multiple of it.
    A video shorter than that, or with a single key frame, is one piece."""
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, not {seconds}")
    keys, per_second, _ = key_frames(src)
    if not keys:
        return [Piece(0, 0, None)]
    cuts, origin = [keys[0]], keys[0]
    for k in keys[1:]:
        if (k - cuts[-1]) / per_second >= seconds and (k - origin) / per_second >= seconds * len(cuts):
            cuts.append(k)

    def warm(first: int) -> int | None:
        before = [k for k in keys if k <= first - PREROLL_S * per_second]
        return before[-1] if before else (keys[0] if keys[0] < first else None)

    return [Piece(i, first, cuts[i + 1] if i + 1 < len(cuts) else None, warm(first) if i else None)
            for i, first in enumerate(cuts)]


class _Preroll:
    """A piece's frames, after up to ``frames`` of the pictures just before it (decoded from the piece's
    ``warm`` key frame): the engine runs on those too, the sink (:class:`_FromFirst`) leaves them out."""

    def __init__(self, source: VideoSource, first: int, frames: int):
        self.source, self.first, self.frames = source, first, frames

    def __iter__(self) -> Iterator[Frame]:
        earlier: deque[Frame] = deque(maxlen=self.frames)
        for frame in self.source:
            if frame.pts is not None and frame.pts < self.first:
                earlier.append(frame)
                continue
            yield from earlier
            earlier.clear()
            yield frame


class _FromFirst:
    """A sink that writes only the pictures at or after ``first`` (pts) to ``sink``."""

    def __init__(self, sink: VideoFileSink, first: int):
        self.sink, self.first, self.skipped = sink, first, 0

    def write(self, frame: Frame, image) -> None:
        if frame.pts is not None and frame.pts < self.first:
            self.skipped += 1
            return
        self.sink.write(frame, image)

    def write_audio(self, item: AudioItem) -> None:
        self.sink.write_audio(item)


def convert_piece(src: str | Path, dst: Path, piece: Piece, engine: FrameEngine, *, crf: int = DEFAULT_CRF,
                  preset: str = DEFAULT_PRESET, on_progress: Callable[[int, int | None], None] | None = None,
                  preroll: int = 0) -> Stats:
    """Stylise one piece of ``src`` into ``piece.name(dst)``: pictures only, original timestamps.
    ``on_progress(frames done, None)`` is called a few times a second, as by :func:`stream.filejob.convert_video`.
    ``preroll``: run ``engine`` (a temporal filter) first on up to that many pictures before the piece,
    from its ``warm`` key frame, and write none of them, so that the piece continues the one before it."""
    out = piece.name(dst)
    warm = piece.warm if preroll > 0 and piece.warm is not None else None
    source = VideoSource(src, segment=(piece.first if warm is None else warm, piece.end))
    source.frame_size = engine.inference_shape(source.width, source.height)
    try:
        sink = VideoFileSink(out, width=source.width, height=source.height, time_base=source.time_base,
                             rate=source.rate, crf=crf, preset=preset, threads=encoder_threads(engine.device),
                             no_bframes=True)
        stats: Stats | None = None
        writer = _FromFirst(sink, piece.first)
        try:
            def finish(clean: bool) -> None:  # the consumer thread, the only one that muxes, closes the file
                done = pipeline.stats
                sink.close(keep=clean and done.frames_out > writer.skipped and not done.interrupted)

            frames = source if warm is None else _Preroll(source, piece.first, preroll)
            pipeline = Pipeline(frames, engine, writer, finish=finish)
            stats = pipeline.run(on_progress=None if on_progress is None else lambda n: on_progress(n, None))
        finally:
            sink.close(keep=False)  # a no-op once the pipeline ran: its consumer closed the sink
    finally:
        source.close()
    stats.frames_in -= writer.skipped
    stats.frames_out -= writer.skipped
    stats.extra["preroll_frames"] = writer.skipped
    if stats.interrupted:
        raise KeyboardInterrupt
    if stats.frames_out == 0:
        raise SourceError(f"{src}: no frame decoded in piece {piece.index} (pts {piece.first}..{piece.end})")
    return stats


def _video_packets(parts: list[Path]) -> Iterator[tuple[float, int, av.Packet]]:
    for order, part in enumerate(parts):
        with av.open(str(part)) as container:
            video = container.streams.video[0]
            for packet in container.demux(video):
                if packet.size and packet.dts is not None:
                    yield float(packet.dts * packet.time_base), order, packet


def _side_items(source: VideoSource) -> Iterator[tuple[float, int, AudioItem]]:
    for item in source.side_items():
        payload = item.payload
        t = payload.dts if isinstance(payload, av.Packet) else payload.pts
        yield (float(t * payload.time_base) if t is not None else 0.0), -1, item


def join(src: str | Path, parts: list[Path], dst: str | Path, *, warn=None) -> int:
    """Write ``dst`` from the pieces' pictures (in order, copied) and the sound and subtitles of ``src``
    (copied or re-encoded as :func:`stream.filejob.convert_video` does); atomic. Returns the frames written."""
    dst = Path(dst)
    check_output_path(dst, str(src))
    if not parts:
        raise SinkError(f"{dst}: nothing to join")
    with av.open(str(parts[0])) as first:
        template = first.streams.video[0]
        source = VideoSource(src)
        try:
            sink = VideoFileSink(dst, width=source.width, height=source.height, time_base=template.time_base,
                                 rate=source.rate, audio=source.audios, subtitles=source.subtitles,
                                 video_template=template)
            keep = False
            try:
                source.decode_streams = {i for i, mode in sink.audio_modes.items() if mode == "transcode"}
                merged = heapq.merge(_video_packets(parts), _side_items(source), key=lambda x: (x[0], x[1]))
                for _, order, item in merged:
                    if order >= 0:
                        sink.write_video_packet(item)
                    else:
                        sink.write_audio(item)
                keep = sink.frames_written > 0
            finally:
                sink.close(keep=keep)
        finally:
            source.close()
    if sink.dropped and warn is not None:
        warn(f"warning: {dst}: left out " + "; ".join(sink.dropped))
    return sink.frames_written


def remove_pieces(dst: Path, pieces: list[Piece]) -> None:
    for piece in pieces:
        try:
            piece.name(dst).unlink(missing_ok=True)
        except OSError as e:
            print(f"animestream: warning: {piece.name(dst)}: cannot remove it ({e.strerror})", file=sys.stderr)
