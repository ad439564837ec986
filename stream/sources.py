"""Frame sources: video files and streams (PyAV) and still images (OpenCV).

A source yields :class:`Frame` objects (RGB uint8, with the input's timestamp) and, for videos with
sound, :class:`AudioItem` objects in demux order, so the sink can interleave them correctly.
Sources are context managers; ``close()`` is idempotent.
OpenCV is imported only where an image is read: file jobs on videos never load it (25 MB of RSS).
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from .errors import SourceError
from .imageinfo import DEFAULT_MAX_PIXELS, header_size

DEFAULT_STREAM_TIMEOUT_S = 5.0  # a network source that sends nothing for this long has stalled
OPEN_TIMEOUT_FACTOR = 2  # and it may take twice that to answer at all

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
DEFAULT_TIME_BASE = Fraction(1, 90000)  # seconds per pts tick when the input has none
# FFmpeg decoder threads for a video: FFmpeg's own choice (one per core plus one) capped at this. Each frame
# thread holds frames of its own (1080p H.264: 161 MB with 17 threads, 91 MB with 8: bench/hostmem.py), and
# on a big host a GPU job's x264 needs the cores: on 16 cores, 8 decoder threads ran a 1080p job at cap 512
# at 146.5 fps against 128.0 with FFmpeg's 17, and 4K at cap 512 at 26.7 against 25.0 (bench/gpu.py's
# variants, one H200 run).
DECODE_THREADS_MAX = 8
SCALE_FILTER = "AREA"  # swscale's filter when frame_size differs from the video's (like OpenCV's INTER_AREA)


@dataclass
class Frame:
    """One decoded picture. ``pts`` is in ``time_base`` units; ``t_captured`` is ``time.perf_counter()``."""

    index: int
    image: np.ndarray  # H x W x 3 uint8 RGB
    pts: int | None
    time_base: Fraction
    t_captured: float

    @property
    def time(self) -> float | None:
        """Presentation time in seconds, or None when the input had no timestamp."""
        return None if self.pts is None else float(self.pts * self.time_base)


@dataclass(frozen=True)
class _Window:
    """A ``start``/``duration`` window in one stream's timestamp units."""

    first: int | None  # earlier pts are dropped (None: none are)
    end: int | None  # pts from here on are past the window (None: it runs to the end)
    shift: int  # subtracted from every kept timestamp, so that the window starts at 0


@dataclass
class AudioItem:
    """A sound or subtitle packet to copy, or a decoded audio frame to re-encode, in demux order.
    ``stream_index`` is the input stream it belongs to (-1: the first audio stream)."""

    payload: av.Packet | av.AudioFrame
    stream_index: int = -1


def _check_file(path: Path) -> None:
    if not path.exists():
        raise SourceError(f"{path}: no such file")
    if path.is_dir():
        raise SourceError(f"{path}: is a folder, expected a video or image file")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: empty file")


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_url(text: str) -> bool:
    """rtsp://, http://, udp://... name a network stream rather than a file."""
    return "://" in text


class VideoSource:
    """Decode a video file or network stream with PyAV.

    ``decode_audio`` asks for decoded audio frames (for re-encoding) instead of packets (for copying).
    :attr:`frame_size` is the (width, height) frames are delivered at, in pixels: the video's own
    size unless set (before iterating) to something else, e.g. a model's inference size. Frames are
    then scaled in the same swscale pass that converts them to RGB, so a smaller size costs nothing.
    A packet that does not decode is skipped and counted in :attr:`undecodable` (the first error in
    :attr:`damage`); the frames after it keep their own timestamps. Decoding stops early, with
    :attr:`truncated` set to the reason, when the file itself breaks off after at least one good frame;
    a damaged input with no good frame raises :class:`SourceError`.
    A file whose display matrix turns its picture by quarter turns (phones record portrait video
    as landscape pictures plus such a turn) is delivered upright: :attr:`width`, :attr:`height` and
    :attr:`frame_size` are the upright picture's, and :attr:`quarter_turns` says how it was turned.
    ``start`` and ``duration`` (seconds, from the first frame; None: to the end) deliver only that
    stretch, video and sound alike, with timestamps moved so that ``start`` becomes 0. Decoding
    begins at the key frame before ``start``; the frames and sound before it are read and dropped.
    """

    def __init__(self, path: str | Path, *, decode_audio: bool = False, start: float = 0.0,
                 duration: float | None = None, timeout: float = DEFAULT_STREAM_TIMEOUT_S,
                 segment: tuple[int, int | None] | None = None):
        if start < 0 or (duration is not None and duration <= 0):
            raise ValueError(f"start must be >= 0 and duration > 0 seconds, not {start} and {duration}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, not {timeout}")
        self.path = str(path)
        self.start, self.duration = start, duration
        self.timeout = timeout if is_url(self.path) else None
        if not is_url(self.path):
            _check_file(Path(self.path))
        try:
            # A network source gets OPEN_TIMEOUT_FACTOR x timeout to answer, then timeout per read.
            self._container = av.open(self.path, "r", timeout=(OPEN_TIMEOUT_FACTOR * timeout, timeout)
                                      if self.timeout else None)
        except av.error.ExitError:
            raise SourceError(f"{self.path}: no answer within {OPEN_TIMEOUT_FACTOR * timeout:g} s "
                              "(the server accepted the connection but sent nothing)") from None
        except av.error.FFmpegError as e:
            raise SourceError(f"{self.path}: not a video FFmpeg can read ({_reason(e)})") from None
        if not self._container.streams.video:
            self._container.close()
            raise SourceError(f"{self.path}: no video stream (an audio-only or data file?)")
        self.video = self._container.streams.video[0]
        self.video.thread_type = "AUTO"
        self.video.thread_count = min((os.cpu_count() or 1) + 1, DECODE_THREADS_MAX)
        self.audios = list(self._container.streams.audio)  # every sound track
        self.audio = self.audios[0] if self.audios else None
        self.subtitles = list(self._container.streams.subtitles)
        # Audio streams delivered as decoded frames (to be re-encoded); the others come as packets.
        self.decode_streams: set[int] = {a.index for a in self.audios} if decode_audio else set()
        self.truncated: str | None = None
        self.undecodable = 0  # video packets that failed to decode and were skipped
        self.damage: str | None = None  # what the first of them said
        self.frames_read = 0
        ctx = self.video.codec_context
        if not ctx.width or not ctx.height:
            self._container.close()
            raise SourceError(f"{self.path}: video stream has no picture size (corrupt header?)")
        self.quarter_turns = 0 if is_url(self.path) else _probe_quarter_turns(self.path)
        self.width, self.height = ctx.width, ctx.height
        if self.quarter_turns % 2:
            self.width, self.height = self.height, self.width
        self.frame_size: tuple[int, int] = (self.width, self.height)
        self._scaler = VideoReformatter()
        self.time_base = self.video.time_base or DEFAULT_TIME_BASE
        self.rate = self.video.average_rate or self.video.guessed_rate or Fraction(30)
        # Read now: a closed container's streams refuse every attribute (PyAV >= 18.1.1), and error
        # messages want the length after the source is closed.
        self.length_s: float | None = self._read_length()
        self.segment = segment
        if segment is not None:  # pictures only, pts in [first, end) of the video's own ticks, not moved
            self.audios, self.audio, self.subtitles = [], None, []
            self._windows = {self.video.index: _Window(first=segment[0], end=segment[1], shift=0)}
        else:
            self._windows = {} if not self.windowed else {
                stream.index: self._window(stream) for stream in (self.video, *self.audios, *self.subtitles)}
        self.description = f"{self.path}: {self.width}x{self.height} @ {float(self.rate):g} fps"

    def _read_length(self) -> float | None:
        """The video's duration in seconds, from its stream or else its container; None when unknown."""
        if self.video.duration:
            return float(self.video.duration * self.time_base)
        return self._container.duration / av.time_base if self._container.duration else None

    @property
    def windowed(self) -> bool:
        return self.start > 0 or self.duration is not None or self.segment is not None

    @property
    def frame_count(self) -> int | None:
        """Frames to be delivered: the container's count, or an estimate from durations; None when unknown."""
        total = int(self.video.frames) if self.video.frames else None
        if total is None and self.length_s:
            total = int(round(self.length_s * self.rate))
        if not self.windowed:
            return total
        if self.segment is not None:
            first, end = self.segment
            end = end if end is not None else (self.video.start_time or 0) + (self.video.duration or 0)
            return max(1, int(round(float((end - first) * self.time_base) * self.rate)))
        counts = [] if total is None else [max(0, total - int(round(self.start * self.rate)))]
        if self.duration is not None:
            counts.append(int(round(self.duration * self.rate)))
        return min(counts) if counts else None

    def _ticks(self, stream: av.stream.Stream, seconds: float) -> int:
        """``seconds`` after the video's first frame, in ``stream``'s timestamp units."""
        origin = float((self.video.start_time or 0) * self.time_base)
        return int(round((origin + seconds) / float(stream.time_base or self.time_base)))

    def _window(self, stream: av.stream.Stream) -> _Window:
        first = self._ticks(stream, self.start)
        # From 0 nothing is dropped: a pts before the first frame's is the encoder's priming.
        return _Window(first=first if self.start > 0 else None,
                       end=None if self.duration is None else self._ticks(stream, self.start + self.duration),
                       shift=first - self._ticks(stream, 0.0))

    def _in_window(self, stream: av.stream.Stream, pts: int | None) -> bool | None:
        """True inside the window, False before it, None past its end (pts None counts as inside)."""
        window = self._windows.get(stream.index)
        if window is None or pts is None:
            return True
        if window.first is not None and pts < window.first:
            return False
        return None if window.end is not None and pts >= window.end else True

    def _seek(self) -> None:
        try:
            self._container.seek(self._windows[self.video.index].first, stream=self.video)
        except av.error.FFmpegError as e:
            raise SourceError(f"{self.path}: cannot seek to {self.start:g} s ({_reason(e)})") from None

    @property
    def decode_audio(self) -> bool:
        """Whether sound comes as decoded frames (for re-encoding) rather than packets (for copying)."""
        return bool(self.decode_streams)

    @decode_audio.setter
    def decode_audio(self, value: bool) -> None:
        self.decode_streams = {a.index for a in self.audios} if value else set()

    def __iter__(self) -> Iterator[Frame | AudioItem]:
        side = {s.index for s in (*self.audios, *self.subtitles)}
        streams = [self.video, *self.audios, *self.subtitles]
        if self.start > 0 or (self.segment is not None and self.segment[0] > (self.video.start_time or 0)):
            self._seek()
        try:
            video_done = False  # past the window's end; sound muxed later may still belong in it
            for packet in self._container.demux(streams):
                if packet.is_corrupt:
                    self.truncated = self.truncated or "a partial packet: the file is cut short"
                    if packet.stream.index in side:
                        continue  # a cut audio packet would make the output's audio undecodable
                if packet.stream.index in side:
                    if self._in_window(packet.stream, packet.pts) is None:
                        if video_done:
                            return
                        continue
                    yield from self._side(packet)
                    continue
                if video_done:
                    continue
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError as e:  # a damaged packet: skip it, the next key frame recovers
                    self.undecodable += 1
                    self.damage = self.damage or _reason(e)
                    continue
                for frame in decoded:
                    inside = self._in_window(self.video, frame.pts)
                    if inside is None:
                        video_done = True
                        if not side:
                            return
                        break
                    if inside:
                        yield self._frame(frame)
        except av.error.FFmpegError as e:
            reason = f"no data for {self.timeout:g} s" if isinstance(e, av.error.ExitError) else _reason(e)
            if self.frames_read == 0:
                raise SourceError(f"{self.path}: cannot decode video ({reason})") from None
            self.truncated = reason
            return
        announced = None if self.windowed else self.video.frames
        if not self.truncated and announced and self.frames_read + self.undecodable < announced:
            self.truncated = f"the stream ends after {self.frames_read} of its {announced} frames"

    def side_items(self) -> Iterator[AudioItem]:
        """Only the sound and subtitle items, in demux order, without decoding a picture (to join pieces
        of this video converted elsewhere with its own sound)."""
        side = [*self.audios, *self.subtitles]
        if not side:
            return
        try:
            for packet in self._container.demux(side):
                if not packet.is_corrupt:
                    yield from self._side(packet)
        except av.error.FFmpegError as e:
            self.truncated = _reason(e)

    def _side(self, packet: av.Packet) -> Iterator[AudioItem]:
        """A sound or subtitle packet as it is to be written: the packet (moved to the window's time)
        or, for a sound track that is re-encoded, its decoded frames."""
        stream = packet.stream
        if stream.index not in self.decode_streams:
            if packet.dts is not None and packet.size and self._in_window(stream, packet.pts):
                if self.start > 0:
                    shift = self._windows[stream.index].shift
                    packet.dts -= shift
                    if packet.pts is not None:
                        packet.pts -= shift
                yield AudioItem(packet, stream.index)
            return
        try:
            for frame in packet.decode():
                if self._in_window(stream, frame.pts):
                    yield AudioItem(frame, stream.index)  # the encoder numbers re-encoded sound itself
        except av.error.FFmpegError:
            return  # a damaged audio packet is skipped, the video goes on

    def _frame(self, frame: av.VideoFrame) -> Frame:
        width, height = self.frame_size
        if self.quarter_turns % 2:
            width, height = height, width
        if (frame.width, frame.height) == (width, height):
            image = frame.to_ndarray(format="rgb24")
        else:
            image = self._scaler.reformat(frame, width, height, "rgb24", interpolation=SCALE_FILTER).to_ndarray()
        if self.quarter_turns:
            image = np.ascontiguousarray(np.rot90(image, self.quarter_turns))
        self.frames_read += 1
        pts = frame.pts
        if pts is not None and self.start > 0 and self.segment is None:
            pts -= self._windows[self.video.index].shift
        return Frame(self.frames_read - 1, image, pts, self.time_base, time.perf_counter())

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def quarter_turns(degrees: float) -> int:
    """Counter-clockwise quarter turns (0..3) for a display rotation in degrees, counter-clockwise
    as ``VideoFrame.rotation`` gives it; 0 for an angle that is not a multiple of 90 (not supported)."""
    turns = round(degrees / 90)
    return turns % 4 if abs(degrees - 90 * turns) < 1 else 0


def _probe_quarter_turns(path: str) -> int:
    """The display rotation of a file's first video frame, as :func:`quarter_turns`; 0 when it has none
    or does not decode (the decoding pass then reports the damage)."""
    try:
        with av.open(path, "r") as container:
            for frame in container.decode(video=0):
                return quarter_turns(frame.rotation)
    except av.error.FFmpegError:
        return 0
    return 0


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, keep_alpha: bool = False) -> np.ndarray:
    """Read an image file as RGB uint8 (16-bit reduced to 8; grey made RGB), or with ``keep_alpha``
    as RGBA when the file has transparency (else RGB).

    An image whose header declares more than ``max_pixels`` (width x height; 0: no limit) is refused
    before it is decoded: a small file can declare a picture that takes gigabytes to decode."""
    import cv2

    path = Path(path)
    _check_file(path)
    try:
        size = header_size(path)
    except OSError as e:
        raise SourceError(f"{path}: cannot read it ({_reason(e)})") from None
    if size is not None and max_pixels and size[0] * size[1] > max_pixels:
        raise SourceError(f"{path}: {size[0]}x{size[1]} is {size[0] * size[1] / 1e6:.0f} megapixels, over the "
                          f"limit of {max_pixels / 1e6:g} (max_pixels)")
    data = np.fromfile(path, np.uint8)
    try:
        if keep_alpha:
            image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
            if image is not None and image.ndim == 3 and image.shape[2] == 4:
                if image.dtype != np.uint8:
                    image = (image // 257).astype(np.uint8)
                return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as e:
        raise SourceError(f"{path}: OpenCV cannot decode it ({_reason(e)})") from None
    if image is None:
        raise SourceError(f"{path}: not an image OpenCV can read")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _reason(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__
