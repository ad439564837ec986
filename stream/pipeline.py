"""Three threads joined by bounded queues: decode -> stylise -> encode.

    producer   iterates the source           -> frames queue (bounded)
    inference  runs the engine on each frame -> results queue (bounded)
    consumer   hands results to the sink(s)

File jobs use blocking queues, so a slow stage holds the others back and no frame is ever lost.
Live jobs (``drop_stale=True``) never block the producer: a newer frame replaces one still waiting,
and each replaced frame is counted in ``dropped``. An exception in any thread stops all three and is
re-raised by :meth:`Pipeline.run` in the calling thread; no thread outlives ``run()``.
Ctrl-C (KeyboardInterrupt in the calling thread) stops decoding, lets frames already stylised reach
the sink, and returns with ``interrupted`` set, so the sink can finish a playable file.

One owner per sink: only the consumer thread writes to the sink, and with ``finish`` it also flushes
and closes it. The calling thread signals and waits; it never leaves :meth:`Pipeline.run` while the
inference or consumer thread still runs, whatever signals arrive (a second Ctrl-C aborts, but still
waits for them). Thread ends are tracked with events set by the threads themselves, never with
``Thread.join``/``is_alive``: on CPython before 3.13 a KeyboardInterrupt inside ``join`` can mark a
thread that still runs as finished, and a caller that then closed a file being muxed crashed.
"""
from __future__ import annotations

import os
import queue
import resource
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Protocol

import numpy as np

from .sources import AudioItem, Frame

QUEUE_FRAMES = 4  # frames waiting between two stages
LAUNCH_WAIT_S = 1.0  # how long a thread launch interrupted by a signal is given to show it happened, seconds
INTERRUPT_GRACE_S = 0.5  # live: how long Ctrl-C waits for a producer blocked in its source before leaving it
POLL_S = 0.05  # how often blocked threads look at the stop flag, seconds
LATENCY_WINDOW = 10_000  # frames kept for latency percentiles
_END = object()


class Source(Protocol):
    """What the producer thread reads: frames (and, from files, audio items) in order.

    ``width`` and ``height`` are the pictures' size in pixels, ``time_base`` the unit of their
    ``pts`` (seconds per tick), ``rate`` the nominal frame rate; ``description`` is one line saying
    what it is. ``close`` releases it and may be called more than once."""

    width: int
    height: int
    time_base: Fraction
    rate: Fraction
    description: str

    def __iter__(self) -> Iterator[Frame | AudioItem]: ...

    def close(self) -> None: ...


class BatchEngine(Protocol):
    """An engine that stylises several same-size frames per call (see :meth:`stream.engine.Engine.submit`)."""

    batch_size: int

    def submit(self, frames: list[np.ndarray]) -> Callable[[], list[np.ndarray]]: ...


class Sink(Protocol):
    """What the consumer thread writes to. Whoever opened a sink closes it: through ``finish`` (in the
    consumer thread, see :class:`Pipeline`), or once :meth:`Pipeline.run` has returned or raised."""

    def write(self, frame: Frame, image: np.ndarray) -> None: ...

    def write_audio(self, item: AudioItem) -> None: ...


@dataclass
class Stats:
    """What one run did. Times in seconds or milliseconds as named; memory in MB."""

    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    wall_s: float = 0.0
    fps: float = 0.0
    latency_ms_p50: float = 0.0
    latency_ms_p95: float = 0.0
    peak_rss_mb: float = 0.0
    interrupted: bool = False
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(d.pop("extra"))
        return d


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    """Resident memory of this process now, MB (Linux: /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _BufferPool:
    """A fixed number of result arrays, handed from the inference thread to the consumer and back."""

    def __init__(self, count: int):
        self._free: queue.Queue[np.ndarray | None] = queue.Queue()
        for _ in range(count):
            self._free.put(None)

    def take(self, like: np.ndarray, stop: threading.Event) -> np.ndarray | None:
        while not stop.is_set():
            try:
                buf = self._free.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if buf is None or buf.shape != like.shape:
                buf = np.empty_like(like)
            np.copyto(buf, like)
            return buf
        return None

    def give(self, buf: np.ndarray) -> None:
        self._free.put(buf)


class Pipeline:
    """Run ``engine`` over ``source`` into ``sink`` on three threads (see the module docstring)."""

    def __init__(self, source: Iterable[Frame | AudioItem], engine: Callable[[np.ndarray], np.ndarray],
                 sink: Sink, *, drop_stale: bool = False, queue_frames: int = QUEUE_FRAMES,
                 batch: BatchEngine | None = None, finish: Callable[[bool], None] | None = None):
        """``batch``: an engine that takes several frames per call (:class:`BatchEngine`, e.g. an
        :class:`~stream.engine.Engine` on a GPU) to run ``batch.batch_size`` frames at a time instead of
        calling ``engine`` per frame; file jobs only (frames keep their order, count and timestamps).
        ``finish(clean)``: called once by the consumer thread after its last write, so that the thread
        that muxes into a file is the one that flushes and closes it; ``clean`` is False after an error
        in any thread or an abort (a second Ctrl-C), True at the source's end or after a Ctrl-C or
        :meth:`stop` (``stats.interrupted`` says which). An exception it raises is re-raised by :meth:`run`."""
        if queue_frames < 1:
            raise ValueError(f"queue_frames must be >= 1, not {queue_frames}")
        if batch is not None and drop_stale:
            raise ValueError("live pipelines run one frame at a time: the newest frame wins")
        self.source, self.engine, self.sink, self.finish = source, engine, sink, finish
        self.drop_stale = drop_stale
        self._batch = batch if batch is not None and batch.batch_size > 1 else None
        n = self._batch.batch_size if self._batch is not None else 1
        size = 1 if drop_stale else max(queue_frames, 2 * n)
        self._frames: queue.Queue = queue.Queue(size)
        self._results: queue.Queue = queue.Queue(size)
        self._pool = _BufferPool(size + 2 * n + 2)
        self._stop = threading.Event()  # abort: an error, or a second Ctrl-C
        self._interrupt = threading.Event()  # finish early but cleanly: Ctrl-C
        self._aborted = False  # a second Ctrl-C: the sink is not finished
        self._ended = {name: threading.Event() for name in ("producer", "inference", "consumer")}
        self._errors: list[BaseException] = []
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.stats = Stats()
        # Live only: a Ctrl-C does not wait for a producer blocked in its source (a stalled network stream,
        # until its read timeout). That thread is left to finish on its own, and calls this when it does,
        # so the source is closed by the one thread that uses it. run() then sets source_abandoned.
        self.on_source_released: Callable[[], None] | None = None
        self.source_abandoned = False
        self._release = threading.Lock()  # the producer's end and run()'s decision to leave it, in one order
        self._producer_done = False
        self._interrupted_at: float | None = None

    # -- queue helpers: every blocking call wakes up to look at the stop flag
    def _put(self, q: queue.Queue, item: object) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _put_latest(self, q: queue.Queue, item: object) -> None:
        """Put without blocking: a waiting frame is replaced (and counted as dropped). Only frames
        and results travel this way; the end marker is put after the last of them by the same thread."""
        while True:
            try:
                q.put_nowait(item)
                return
            except queue.Full:
                try:
                    stale = q.get_nowait()
                except queue.Empty:
                    continue
                if isinstance(stale, tuple):
                    self._pool.give(stale[1])
                self.stats.dropped += 1

    def _get(self, q: queue.Queue) -> object:
        while not self._stop.is_set():
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                continue
        return _END

    def _guard(self, name: str, body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except BaseException as e:  # noqa: BLE001 - handed to the calling thread, never swallowed
                self._errors.append(e)
                self._stop.set()
            finally:
                self._ended[name].set()  # the last thing this thread does with the source, engine or sink
        return run

    # -- the three stages
    def _produce(self) -> None:
        try:
            self._produce_items()
        finally:
            with self._release:
                self._producer_done = True
                if self.source_abandoned and self.on_source_released is not None:
                    self.on_source_released()

    def _produce_items(self) -> None:
        try:
            for item in self.source:
                if self._stop.is_set() or self._interrupt.is_set():
                    break
                if isinstance(item, Frame):
                    self.stats.frames_in += 1
                    if self.drop_stale:
                        self._put_latest(self._frames, item)
                        continue
                elif self.drop_stale:
                    continue  # live sinks carry no sound, and audio must never hold capture back
                if not self._put(self._frames, item):
                    break
        finally:
            self._put(self._frames, _END)

    def _infer(self) -> None:
        if self._batch is not None:
            self._infer_batches(self._batch)
            return
        try:
            while (item := self._get(self._frames)) is not _END:
                if isinstance(item, AudioItem):
                    if not self._put(self._results, item):
                        break
                    continue
                if self._interrupt.is_set():
                    continue  # Ctrl-C: frames not yet started are not worth waiting for
                buf = self._pool.take(self.engine(item.image), self._stop)
                if buf is None:
                    break
                if self.drop_stale:
                    self._put_latest(self._results, (item, buf))
                elif not self._put(self._results, (item, buf)):
                    break
        finally:
            self._put(self._results, _END)

    def _infer_batches(self, engine: BatchEngine) -> None:
        """Frames ``engine.batch_size`` at a time; a batch is submitted before the previous one's results
        are collected, so the device never waits for the host. Sound passes straight through; a frame
        of another size than the batch's starts the next batch."""
        pending: tuple[list[Frame], Callable[[], list[np.ndarray]]] | None = None
        carry: Frame | None = None
        try:
            done = False
            while not done:
                frames: list[Frame] = [carry] if carry is not None else []
                carry = None
                while len(frames) < engine.batch_size:
                    item = self._get(self._frames)
                    if item is _END:
                        done = True
                        break
                    if isinstance(item, AudioItem):
                        if not self._put(self._results, item):
                            return
                        continue
                    if frames and item.image.shape != frames[0].image.shape:
                        carry = item
                        break
                    frames.append(item)
                if self._interrupt.is_set() or self._stop.is_set():
                    frames, carry = [], None  # Ctrl-C: frames not yet started are not worth waiting for
                submitted = (frames, engine.submit([f.image for f in frames])) if frames else None
                if pending is not None and not self._deliver(*pending):
                    return
                pending = submitted
            if pending is not None:
                self._deliver(*pending)
        finally:
            self._put(self._results, _END)

    def _deliver(self, frames: list[Frame], collect: Callable[[], list[np.ndarray]]) -> bool:
        for frame, image in zip(frames, collect()):
            buf = self._pool.take(image, self._stop)
            if buf is None or not self._put(self._results, (frame, buf)):
                return False
        return True

    def _consume(self) -> None:
        try:
            self._consume_items()
        finally:
            if self.finish is not None:
                # the inference thread has put its end marker (or an error/abort stopped everything), so
                # the errors list and the interrupt flag are final for this decision
                self.finish(not self._errors and not self._aborted)

    def _consume_items(self) -> None:
        while (item := self._get(self._results)) is not _END:
            if isinstance(item, AudioItem):
                self.sink.write_audio(item)
                continue
            frame, image = item
            try:
                self.sink.write(frame, image)
            finally:
                self._pool.give(image)
            self.stats.frames_out += 1
            self._latencies.append(time.perf_counter() - frame.t_captured)

    @property
    def last_latency_ms(self) -> float:
        """Capture-to-sink latency of the latest frame, ms (0 before the first)."""
        return self._latencies[-1] * 1000.0 if self._latencies else 0.0

    def stop(self, *, interrupted: bool = False) -> None:
        """Ask a running pipeline to finish early and cleanly, as Ctrl-C does (thread-safe); with
        ``interrupted``, ``stats.interrupted`` is set as after a Ctrl-C (a cancelled job, not a quit)."""
        if interrupted:
            self.stats.interrupted = True
        self._interrupt.set()

    def run(self, on_progress: Callable[[int], None] | None = None, tick_s: float = POLL_S) -> Stats:
        """Run to the end of the source (or Ctrl-C); re-raise the first error of any thread.

        ``on_progress(frames_out)`` is called in the calling thread every ``tick_s`` seconds (a
        preview window pumps its events there). Returns or raises only once the inference and consumer
        threads have ended (a live producer blocked in its source excepted, see ``on_source_released``).
        A second Ctrl-C aborts: the KeyboardInterrupt is re-raised after those threads have ended.
        """
        names = ("producer", "inference", "consumer")
        bodies = (self._produce, self._infer, self._consume)
        threads = [threading.Thread(target=self._guard(name, body), name=f"animestream-{name}", daemon=True)
                   for name, body in zip(names, bodies)]
        t0 = time.perf_counter()
        abort: KeyboardInterrupt | None = None
        try:
            for t in threads:
                self._launch(t)
            self._wait(on_progress, tick_s)
        except KeyboardInterrupt as e:  # a second Ctrl-C
            abort = e
            self._aborted = True
        finally:
            self._stop.set()
            abort = self._wait_for(self._ended["inference"]) or abort
            abort = self._wait_for(self._ended["consumer"]) or abort
            abandon = self.drop_stale and self.on_source_released is not None and self._interrupt.is_set()
            since = time.perf_counter() - (self._interrupted_at or time.perf_counter())
            grace = max(0.0, INTERRUPT_GRACE_S - since) if abandon else None
            abort = self._wait_for(self._ended["producer"], grace) or abort
            with self._release:
                if not self._producer_done:  # blocked in the source: it releases the source when it returns
                    self.source_abandoned = True
        self._finish_stats(time.perf_counter() - t0)
        if self._errors:
            raise self._errors[0]
        if abort is not None:
            raise abort
        return self.stats

    def _launch(self, t: threading.Thread) -> None:
        """Start ``t`` whatever signals come meanwhile (each counts as a Ctrl-C: the first interrupts,
        another aborts), so that every thread :meth:`run` waits for does run."""
        while True:
            try:
                t.start()
                return
            except KeyboardInterrupt:
                self._signalled()
            # the signal came either before the thread was launched, or while start() waited for it
            try:
                if t._started.wait(LAUNCH_WAIT_S):  # noqa: SLF001 - the only record of a launch
                    return
            except KeyboardInterrupt:
                self._signalled()
                if t._started.is_set():  # noqa: SLF001
                    return

    def _signalled(self) -> None:
        """A Ctrl-C where it cannot be raised: the first interrupts, a later one aborts."""
        if self._interrupt.is_set():
            self._aborted = True
            self._stop.set()
        else:
            self.stats.interrupted = True  # before the flag: a thread that sees the flag sees this too
            self._interrupt.set()

    def _wait_for(self, ended: threading.Event, timeout: float | None = None) -> KeyboardInterrupt | None:
        """Wait until ``ended`` is set (or ``timeout`` seconds): signals do not cut this short. Returns
        the KeyboardInterrupt that came meanwhile, if any (after setting the stop flag)."""
        came = None
        deadline = None if timeout is None else time.perf_counter() + timeout
        while not ended.is_set():
            left = POLL_S if deadline is None else min(POLL_S, deadline - time.perf_counter())
            if left <= 0:
                break
            try:
                ended.wait(left)
            except KeyboardInterrupt as e:
                came = e
                self._aborted = True  # the stop flag is set already
        return came

    def _wait(self, on_progress: Callable[[int], None] | None, tick_s: float) -> None:
        ended = self._ended.values()
        while not all(e.is_set() for e in ended):
            try:
                if self._interrupted_at is None and self._interrupt.is_set():
                    self._interrupted_at = time.perf_counter()
                if (self._interrupted_at is not None and self.drop_stale and self.on_source_released is not None
                        and time.perf_counter() - self._interrupted_at > INTERRUPT_GRACE_S):
                    break  # a live source that does not let go (see on_source_released)
                self._ended["consumer"].wait(tick_s)
                if on_progress is not None:
                    on_progress(self.stats.frames_out)
            except KeyboardInterrupt:
                if self._interrupt.is_set():
                    raise  # a second Ctrl-C aborts
                self._signalled()
        if on_progress is not None:
            try:
                on_progress(self.stats.frames_out)
            except KeyboardInterrupt:  # every thread is done: nothing left to interrupt or abort
                self.stats.interrupted = True

    def _finish_stats(self, wall_s: float) -> None:
        s = self.stats
        s.wall_s = round(wall_s, 3)
        s.fps = round(s.frames_out / wall_s, 2) if wall_s > 0 else 0.0
        if self._latencies:
            lat = np.array(self._latencies) * 1000.0
            s.latency_ms_p50 = round(float(np.percentile(lat, 50)), 1)
            s.latency_ms_p95 = round(float(np.percentile(lat, 95)), 1)
        s.peak_rss_mb = round(peak_rss_mb(), 1)
