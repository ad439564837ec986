"""Frame sinks: an encoded video file (PyAV: libx264, or VP9 for WebM) and still images (OpenCV,
imported only there).

Every sink writes to a temporary file beside its target and moves it into place only in
:meth:`VideoFileSink.close` with ``keep=True``; with ``keep=False`` the temporary file is removed,
so a failed run never leaves anything at the target path.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from .errors import SinkError
from .sources import AudioItem, Frame

DEFAULT_CRF = 18  # x264 constant rate factor: 0 lossless .. 51 worst; 18 looks transparent
DEFAULT_PRESET = "veryfast"
CPU_BOUND_ENCODER_THREADS = 1  # x264 threads when a CPU model sets the pace: more only preempt its threads
SCALE_FILTER = "BILINEAR"  # swscale's filter for frames written smaller than the video (like OpenCV's INTER_LINEAR)
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# Audio codecs the MP4/MOV muxers really finish a file with (PyAV's supported_codecs also lists PCM,
# which then fails at the trailer); other containers are trusted to report their own.
MP4_AUDIO = frozenset({"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"})
MP4_FORMATS = frozenset({"mp4", "mov", "ipod", "3gp", "3g2", "psp"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".gif"})
VP9_CRF_PER_X264_CRF = 63 / 51  # libvpx-vp9's crf runs 0..63 where x264's runs 0..51
# libvpx-vp9's cpu-used (0 slowest .. 8 fastest) for each x264 preset; the fast ones use the realtime deadline
VP9_CPU_USED = dict(zip(X264_PRESETS, (8, 8, 7, 6, 5, 4, 3, 2, 1)))
VP9_REALTIME_PRESETS = frozenset({"ultrafast", "superfast", "veryfast"})
OPUS_RATE = 48000  # Hz: the rate WebM's Opus audio is encoded at, whatever the source's


def check_output_path(target: Path, source: str | None) -> None:
    """Refuse an output that would be written into a missing folder, onto a folder, or onto the input."""
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise SinkError(f"{target}: output folder {parent} does not exist")
    if target.is_dir():
        raise SinkError(f"{target}: is a folder, expected an output file path")
    if source is not None and "://" not in source:
        src = Path(source)
        same = src.resolve() == target.resolve() or (
            src.exists() and target.exists() and os.path.samefile(src, target))
        if same:
            raise SinkError(f"{target}: output is the input file; choose another output path")


def temp_path(target: Path) -> Path:
    """A hidden file beside ``target`` with the same extension (FFmpeg picks formats by extension).

    Leftovers of earlier runs for the same target whose process is gone (killed with SIGKILL, or a
    power cut) are removed first."""
    remove_stale_temp_files(target)
    return target.with_name(f".{target.stem}.{os.getpid()}.partial{target.suffix}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_stale_temp_files(target: Path) -> list[Path]:
    """Delete ``.STEM.PID.partial.EXT`` files beside ``target`` left by processes that no longer run."""
    removed = []
    try:
        candidates = list(target.parent.glob(f".{target.stem}.*.partial{target.suffix}"))
    except OSError:
        return removed
    for tmp in candidates:
        pid = tmp.name[len(target.stem) + 2: -len(f".partial{target.suffix}")]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def _reason(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


ALPHA_EXTENSIONS = frozenset({".png", ".webp", ".tif", ".tiff"})  # image outputs that keep transparency


def write_image(target: Path, rgb: np.ndarray) -> None:
    """Encode ``rgb`` (RGB, or RGBA for :data:`ALPHA_EXTENSIONS`) by the target's extension and move it
    into place atomically; a file system that refuses (read-only, no permission, full) is a one-line
    :class:`SinkError` and leaves nothing behind. WebP is written lossless when it carries transparency."""
    import cv2

    params: list[int] = []
    if rgb.shape[2] == 4:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA)
        if target.suffix.lower() == ".webp":
            params = [cv2.IMWRITE_WEBP_QUALITY, 101]  # above 100: lossless, so the alpha survives as it was
    else:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(target.suffix or ".png", bgr, params)
    if not ok:
        raise SinkError(f"{target}: OpenCV cannot write {target.suffix or 'this'} images")
    tmp = temp_path(target)
    try:
        _write_bytes(tmp, data.tobytes())
        os.replace(tmp, target)
    except OSError as e:
        raise SinkError(f"{target}: cannot write it ({_reason(e)})") from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # never created (a read-only or unwritable folder)


def encoder_threads(model_device: object) -> int:
    """x264 threads for a job whose model runs on ``model_device`` (a ``torch.device`` or None):
    :data:`CPU_BOUND_ENCODER_THREADS` on the CPU, else 0 (x264's own choice)."""
    return CPU_BOUND_ENCODER_THREADS if getattr(model_device, "type", None) == "cpu" else 0


def video_codec_options(container_format: str, crf: int, preset: str, threads: int) -> tuple[str, dict[str, str]]:
    """The video encoder and its options for a container: libx264, or libvpx-vp9 in WebM (which
    takes no H.264), with ``crf`` and ``preset`` given on x264's scales and mapped onto VP9's."""
    if container_format == "gif":
        return "gif", {}
    if container_format == "webm":
        options = {"crf": str(round(crf * VP9_CRF_PER_X264_CRF)), "b": "0", "row-mt": "1",
                   "cpu-used": str(VP9_CPU_USED[preset]),
                   "deadline": "realtime" if preset in VP9_REALTIME_PRESETS else "good"}
        name = "libvpx-vp9"
    else:
        options, name = {"crf": str(crf), "preset": preset}, "libx264"
    if threads:
        options["threads"] = str(threads)
    return name, options


class VideoFileSink:
    """Encode frames with libx264, or VP9 in WebM (yuv420p; yuv444p for odd sizes), and copy or
    re-encode audio.

    Video timestamps are the source's own (``time_base`` ticks), so variable frame rates survive.
    ``audio`` is the source's audio stream or None; :attr:`audio_mode` says what happens to it:
    ``"copy"`` when the container accepts its codec, ``"transcode"`` (to AAC, or the container's
    default) otherwise, None without audio. ``threads`` is x264's thread count (0: x264's choice,
    1.5 per core); one is enough when a CPU model sets the pace, and leaves the cores to it.
    Frames of another size than ``width`` x ``height`` pixels are scaled to it in the same swscale
    pass that converts them to the encoder's YUV, so a job can stylise at a smaller size for free.
    Not thread-safe: the thread that writes is the one that closes (FFmpeg crashes when one thread
    flushes or closes a container another is muxing into); a pipeline closes it with ``finish``.
    """

    def __init__(self, target: str | Path, *, width: int, height: int, time_base: Fraction, rate: Fraction,
                 audio: av.audio.stream.AudioStream | list | None = None, crf: int = DEFAULT_CRF,
                 preset: str = DEFAULT_PRESET, threads: int = 0, subtitles: list | None = (),
                 video_template: av.video.stream.VideoStream | None = None, no_bframes: bool = False,
                 hardware: tuple[str, dict[str, str]] | None = None):
        """``video_template``: copy encoded video packets of a stream like this one (:meth:`write_video_packet`)
        instead of encoding frames; ``no_bframes``: encode without B-frames, so that each packet's decoding
        time equals its presentation time (pieces of one video encoded apart can then be joined);
        ``hardware``: an H.264 encoder and its options to use instead of libx264 (one that opens:
        :func:`stream.devicejob.pick_encoder`)."""
        if not 0 <= crf <= 51:
            raise ValueError(f"crf must be in 0..51, not {crf}")
        if preset not in X264_PRESETS:
            raise ValueError(f"preset must be one of {', '.join(X264_PRESETS)}, not {preset!r}")
        if threads < 0:
            raise ValueError(f"threads must be >= 0, not {threads}")
        self.target = Path(target)
        self.tmp = temp_path(self.target)
        self.width, self.height = width, height
        self._scaler = VideoReformatter()
        self.frames_written = 0
        self.last_time: float | None = None
        self._closed = False
        self.dropped: list[str] = []  # what the input had that this output cannot hold, for a warning
        # input stream index -> (mode, output stream): every sound track (copied or re-encoded), subtitles
        self._sides: dict[int, tuple[str, av.stream.Stream]] = {}
        self.audio_mode, self._audio, self.audio_modes = None, None, {}
        try:
            self._container = av.open(str(self.tmp), "w")
        except (av.error.FFmpegError, OSError, ValueError) as e:
            try:
                self.tmp.unlink(missing_ok=True)
            except OSError:
                pass
            if isinstance(e, OSError) and e.errno is not None:
                raise SinkError(f"{self.target}: cannot write it ({_reason(e)})") from None
            raise SinkError(f"{self.target}: cannot write this kind of file ({e})") from None
        self._format = self._container.format.name.split(",")[0]
        self._copy_video = video_template is not None
        try:
            if video_template is not None:
                self._video = self._container.add_stream_from_template(video_template)
                self._video.time_base = video_template.time_base
            else:
                codec, options = video_codec_options(self._format, crf, preset, threads)
                if hardware is not None and codec == "libx264":
                    codec, options = hardware[0], dict(hardware[1])
                if no_bframes and codec == "libx264":
                    options["bf"] = "0"
                self._video = self._container.add_stream(codec, rate=rate)
                self._video.width, self._video.height = width, height
                if codec == "gif":
                    self._video.pix_fmt = "rgb8"
                else:
                    self._video.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
                self._video.time_base = time_base
                self._video.codec_context.time_base = time_base
                self._video.options = options
            audios = [] if audio is None else list(audio) if isinstance(audio, (list, tuple)) else [audio]
            for track in audios:
                added = self._add_audio(track)
                if added[0] is not None:
                    self._sides[track.index] = added
            for sub in subtitles:
                self._add_subtitles(sub)
            first = self._sides.get(audios[0].index) if audios else None
            self.audio_mode, self._audio = first if first else (None, None)
            self.audio_modes = {index: mode for index, (mode, _) in self._sides.items() if mode in ("copy", "transcode")}
        except (av.error.FFmpegError, ValueError) as e:
            self.close(keep=False)
            raise SinkError(f"{self.target}: cannot set up the encoder ({e})") from None

    def _add_subtitles(self, sub: av.stream.Stream) -> None:
        name = sub.codec_context.name
        allowed = {"mov_text"} if self._format in MP4_FORMATS else self._container.supported_codecs
        if name not in allowed:
            self.dropped.append(f"{name} subtitles (stream {sub.index}: {self._format} cannot hold them)")
            return
        self._sides[sub.index] = ("subtitles", self._container.add_stream_from_template(sub))

    def _add_audio(self, audio: av.audio.stream.AudioStream | None):
        if audio is None:
            return None, None
        if self._format == "gif":
            self.dropped.append(f"sound (stream {audio.index}: GIF has none)")
            return None, None
        name = audio.codec_context.name
        allowed = MP4_AUDIO if self._format in MP4_FORMATS else self._container.supported_codecs
        if name in allowed:
            return "copy", self._container.add_stream_from_template(audio)
        codec = "aac" if "aac" in self._container.supported_codecs else self._container.default_audio_codec
        rate = audio.codec_context.sample_rate or 48000
        if codec == "opus":
            codec, rate = "libopus", OPUS_RATE  # FFmpeg's own Opus encoder is experimental
        out = self._container.add_stream(codec, rate=rate)
        channels = audio.codec_context.channels or 2
        out.layout = {1: "mono", 2: "stereo"}.get(channels, "stereo")
        return "transcode", out

    def write(self, frame: Frame, image: np.ndarray) -> None:
        """Encode ``image`` (RGB uint8, any size: see the class) at ``frame``'s timestamp."""
        vf = av.VideoFrame.from_ndarray(image, format="rgb24")
        if (vf.width, vf.height) != (self.width, self.height):
            vf = self._scaler.reformat(vf, self.width, self.height, self._video.pix_fmt, interpolation=SCALE_FILTER)
        self._encode(vf, frame)

    def _encode(self, vf: av.VideoFrame, frame: Frame) -> None:
        """Encode and mux ``vf`` at ``frame``'s timestamp (the frame's index where it has no pts)."""
        vf.pts = frame.pts if frame.pts is not None else frame.index
        vf.time_base = frame.time_base
        try:
            for packet in self._video.encode(vf):
                self._container.mux(packet)
        except (av.error.FFmpegError, OSError) as e:
            raise SinkError(f"{self.target}: cannot write it ({_reason(e)})") from None
        self.frames_written += 1
        self.last_time = frame.time

    def write_video_packet(self, packet: av.Packet) -> None:
        """Copy an encoded video packet (a sink made with ``video_template``), timestamps as they are."""
        packet.stream = self._video
        try:
            self._container.mux(packet)
        except (av.error.FFmpegError, OSError) as e:
            raise SinkError(f"{self.target}: cannot write it ({_reason(e)})") from None
        self.frames_written += 1

    def write_audio(self, item: AudioItem) -> None:
        """Copy a sound or subtitle packet, or re-encode an audio frame, into its track of this file."""
        if item.stream_index == -1:
            out = self._audio
        else:
            out = self._sides.get(item.stream_index, (None, None))[1]
        if out is None:
            return
        payload = item.payload
        try:
            if isinstance(payload, av.Packet):
                payload.stream = out
                self._container.mux(payload)
                return
            payload.pts = None  # the encoder re-chunks samples and numbers them itself
            for packet in out.encode(payload):
                self._container.mux(packet)
        except (av.error.FFmpegError, OSError) as e:
            raise SinkError(f"{self.target}: cannot write it ({_reason(e)})") from None

    def close(self, *, keep: bool) -> None:
        """Flush the encoders and, with ``keep``, move the file into place; else delete it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        failed: Exception | None = None
        try:
            if keep:
                flushed = [] if self._copy_video else [self._video]
                flushed += [out for mode, out in self._sides.values() if mode == "transcode"]
                for stream in flushed:
                    for packet in stream.encode(None):
                        self._container.mux(packet)
        except (av.error.FFmpegError, OSError) as e:
            failed = e
        try:  # closed even where flushing failed: an open container holds a deleted file's space and descriptor
            self._container.close()
            if keep and failed is None:
                os.replace(self.tmp, self.target)
        except (av.error.FFmpegError, OSError) as e:
            failed = failed or e
        finally:
            try:
                self.tmp.unlink(missing_ok=True)
            except OSError:
                pass
        if failed is not None:
            raise SinkError(f"{self.target}: cannot finish the file ({_reason(failed)})") from None

    def __enter__(self) -> VideoFileSink:
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        self.close(keep=exc_type is None)
