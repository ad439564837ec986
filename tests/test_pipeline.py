"""The three-thread pipeline: errors reach the caller, no thread outlives run(), memory stays flat."""
from __future__ import annotations

import signal
import threading
import time
from fractions import Fraction

import numpy as np
import pytest

import media
from media import animestream_threads, frame_image, partial_files
from stream.filejob import convert_video
from stream.engine import Engine
from stream.pipeline import Pipeline, current_rss_mb
from stream.sources import AudioItem, Frame

TB = Fraction(1, 24)


def frames(n: int, width: int = 64, height: int = 48):
    for i in range(n):
        yield Frame(i, frame_image(i, width, height), i, TB, 0.0)


class ListSink:
    def __init__(self):
        self.frames: list[tuple[int, np.ndarray]] = []
        self.audio: list[AudioItem] = []

    def write(self, frame, image):
        self.frames.append((frame.index, image.copy()))

    def write_audio(self, item):
        self.audio.append(item)


class Boom(RuntimeError):
    pass


def test_pipeline_keeps_every_frame_in_order_with_audio_interleaved(tiny_engine):
    items = []
    for f in frames(12):
        items.append(f)
        if f.index % 3 == 0:
            items.append(AudioItem(payload=f"audio-{f.index}"))  # any payload: the sink gets it as is
    sink = ListSink()
    stats = Pipeline(items, tiny_engine, sink).run()
    assert [i for i, _ in sink.frames] == list(range(12))
    assert [a.payload for a in sink.audio] == [f"audio-{i}" for i in range(0, 12, 3)]
    assert stats.frames_in == stats.frames_out == 12 and stats.dropped == 0
    # Each written image is the engine's result for that frame (the pool copies it out in time).
    for i, image in sink.frames:
        np.testing.assert_array_equal(image, tiny_engine(frame_image(i, 64, 48)))
    assert animestream_threads() == []


def test_engine_error_is_reraised_and_no_thread_is_left(tiny_engine):
    calls = []

    def engine(image):
        calls.append(1)
        if len(calls) == 5:
            raise Boom("frame 5 failed")
        return tiny_engine(image)

    sink = ListSink()
    with pytest.raises(Boom, match="frame 5 failed"):
        Pipeline(list(frames(40)), engine, sink).run()
    assert animestream_threads() == []
    assert len(calls) == 5  # it stopped at the error instead of going on
    assert len(sink.frames) <= 4


def test_sink_and_source_errors_are_reraised(tiny_engine):
    class BadSink(ListSink):
        def write(self, frame, image):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        Pipeline(list(frames(10)), tiny_engine, BadSink()).run()
    assert animestream_threads() == []

    def bad_source():
        yield from frames(3)
        raise ValueError("decoder died")

    with pytest.raises(ValueError, match="decoder died"):
        Pipeline(bad_source(), tiny_engine, ListSink()).run()
    assert animestream_threads() == []


class _BreaksAtFrame5:
    """A FrameEngine (see stream.engine) that fails on its fifth frame."""

    def __init__(self, engine):
        self.engine, self.calls = engine, 0
        self.style, self.precision, self.max_side, self.device = (engine.style, engine.precision, engine.max_side,
                                                                  engine.device)

    def inference_shape(self, width, height):
        return self.engine.inference_shape(width, height)

    def reset(self):
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        if self.calls == 5:
            raise Boom("engine broke")
        return self.engine(image)


def test_engine_error_during_convert_video_leaves_nothing(tmp_path, clip, tiny_engine):
    engine = _BreaksAtFrame5(tiny_engine)
    out = tmp_path / "out.mp4"
    with pytest.raises(Boom):
        convert_video(clip, out, engine, progress=False)
    assert not out.exists()
    assert partial_files(tmp_path) == []
    assert animestream_threads() == []


def test_no_thread_left_after_a_successful_conversion(tmp_path, clip, tiny_engine):
    convert_video(clip, tmp_path / "ok.mp4", tiny_engine, progress=False)
    assert animestream_threads() == []


def test_stop_finishes_early_and_cleanly(tiny_engine):
    sink = ListSink()
    pipeline = None

    def engine(image, n=[0]):
        n[0] += 1
        if n[0] == 3:
            pipeline.stop()
        return tiny_engine(image)

    pipeline = Pipeline(frames(1000), engine, sink)
    stats = pipeline.run()
    assert 3 <= stats.frames_out < 1000
    assert stats.frames_out == len(sink.frames)
    assert [i for i, _ in sink.frames] == list(range(stats.frames_out))
    assert animestream_threads() == []


def test_drop_stale_replaces_waiting_frames_and_counts_them(tiny_engine):
    released = threading.Event()

    def source():
        yield from frames(200, 16, 16)
        released.set()

    def engine(image):
        released.wait(60)  # the first frame waits until the producer has pushed everything
        return tiny_engine(image)

    stats = Pipeline(source(), engine, ListSink(), drop_stale=True).run()
    assert stats.frames_in == 200
    assert stats.frames_out + stats.dropped == 200
    assert stats.dropped >= 190
    assert animestream_threads() == []


def test_queue_size_must_be_positive(tiny_engine):
    with pytest.raises(ValueError):
        Pipeline([], tiny_engine, ListSink(), queue_frames=0)


def test_memory_stays_flat_over_a_long_stream(tiny_style):
    engine = Engine(tiny_style, max_side=32, precision="fp32", device="cpu")
    total, warmup = 600, 50
    rss: dict[str, float] = {}

    class MeasuringSink:
        n = 0

        def write(self, frame, image):
            self.n += 1
            if self.n == warmup:
                rss["warm"] = current_rss_mb()

        def write_audio(self, item):
            pass

    stats = Pipeline(frames(total), engine, MeasuringSink()).run()
    rss["end"] = current_rss_mb()
    assert stats.frames_out == total
    growth = rss["end"] - rss["warm"]
    assert growth < 5.0, f"RSS grew by {growth:.1f} MB over {total - warmup} frames"


def test_memory_stays_flat_through_convert_video(tmp_path, tiny_style):
    """The whole file path (decode, engine, x264, mux) over the last 460 or more of 560 frames.

    Measured from the 100th frame of a job, not from its start: a job's threads (FFmpeg's decoder takes one
    per core plus one, up to 16) each bring a stack and buffers when they start: with a 16-core host's 16
    decoder threads, RSS grew by 11, 10, 6 and then 0.5 MB over a process's first jobs after the warm-up
    (converging: no leak), more than a 2-core host's first job. Frames are what must not cost memory."""
    total, settled = 560, 100
    src = media.write_clip(tmp_path / "long.mp4", frames=total, audio=None)
    engine = Engine(tiny_style, max_side=32, precision="fp32", device="cpu")
    convert_video(src, tmp_path / "warm.mp4", engine, progress=False)  # warm every allocator up
    start: dict[str, float] = {}

    def progress(done: int, _expected: int | None) -> None:
        if done >= settled and not start:
            start.update(frames=done, rss=current_rss_mb())

    stats = convert_video(src, tmp_path / "again.mp4", engine, progress=False, on_progress=progress)
    growth = current_rss_mb() - start["rss"]
    assert stats.frames_out == total and start["frames"] <= total // 2  # at least 280 frames measured
    assert growth < 5.0, f"RSS grew by {growth:.1f} MB over {total - start['frames']} frames"


class BlockingSink:
    """A sink whose writes take as long as the test says (a long mux), and that records who closes it."""

    def __init__(self):
        self.writing, self.release = threading.Event(), threading.Event()
        self.busy = False
        self.closed_by: list[tuple[str, bool]] = []

    def write(self, frame, image):
        self.busy = True
        self.writing.set()
        self.release.wait(30)
        self.busy = False

    def write_audio(self, item):
        pass

    def close(self, clean):
        assert not self.busy
        self.closed_by.append((threading.current_thread().name, clean))


def _signal_main_while_writing(sink: BlockingSink, count: int) -> threading.Thread:
    """Send the main thread ``count`` SIGINTs while the sink is in a write, then let the write end."""
    main = threading.main_thread().ident

    def send():
        sink.writing.wait(30)
        for _ in range(count):
            signal.pthread_kill(main, signal.SIGINT)
            time.sleep(0.2)  # the main thread is back in its wait for the threads
        sink.release.set()

    sender = threading.Thread(target=send)
    sender.start()
    return sender


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals reach the main thread")
def test_ctrl_c_returns_only_after_the_consumer_let_go_of_the_sink_and_closed_it():
    # On CPython before 3.13, a KeyboardInterrupt inside Thread.join() can mark a thread that still runs as
    # finished; run() then returned while the sink was mid-write, and its caller closed a file being muxed.
    sink = BlockingSink()
    sender = _signal_main_while_writing(sink, 1)
    stats = Pipeline(frames(3), lambda image: image, sink, finish=sink.close).run()
    sender.join()
    assert not sink.busy
    assert stats.interrupted and 1 <= stats.frames_out <= 3
    assert sink.closed_by == [("animestream-consumer", True)]  # the thread that writes closes, once
    assert animestream_threads() == []


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals reach the main thread")
def test_a_second_ctrl_c_aborts_but_still_waits_for_the_sink():
    sink = BlockingSink()
    sender = _signal_main_while_writing(sink, 2)
    with pytest.raises(KeyboardInterrupt):
        Pipeline(frames(3), lambda image: image, sink, finish=sink.close).run()
    sender.join()
    assert not sink.busy
    assert sink.closed_by == [("animestream-consumer", False)]  # aborted: the file is not kept
    assert animestream_threads() == []


@pytest.mark.parametrize("cores, threads", [(2, 3), (7, 8), (16, 8), (64, 8)])
def test_the_decoder_takes_ffmpegs_thread_count_capped_at_eight(clip, monkeypatch, cores, threads):
    """FFmpeg's own choice is one thread per core plus one; each frame thread holds frames of its own, so a
    big host (where x264 also wants the cores) gets at most DECODE_THREADS_MAX."""
    from stream import sources

    monkeypatch.setattr(sources.os, "cpu_count", lambda: cores)
    source = sources.VideoSource(clip)
    try:
        assert source.video.thread_count == threads and source.video.thread_type.name == "AUTO"
        assert sum(isinstance(item, sources.Frame) for item in source) == 30  # and it decodes every frame
    finally:
        source.close()
