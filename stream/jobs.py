"""Video jobs for the web service: uploads queued, converted one at a time, results kept for a while.

A :class:`JobQueue` owns a folder. Each job is a sub-folder holding the upload and, once done, the
result; :meth:`JobQueue.submit` takes an upload already on disk, and a single worker thread converts
jobs in order through :func:`stream.filejob.convert_video` (so sound and timestamps are kept, and a
failed or cancelled job leaves no result: results are written atomically); :func:`converter` makes that
function from an engine factory, with the job's ``deflicker`` choice applied. Limits: at most ``queue``
jobs waiting, ``quota_bytes`` in the folder, and results deleted ``ttl_s`` seconds after they finish.
"""
from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import AnimestreamError
from .sinks import VIDEO_EXTENSIONS

if TYPE_CHECKING:
    from .engine import FrameEngine

DEFAULT_TTL_S = 3600.0  # a finished job's files are deleted this long after it ended
DEFAULT_QUEUE = 8  # jobs waiting behind the one running
DEFAULT_QUOTA_BYTES = 4 * 2**30  # uploads and results together
STATES = ("queued", "running", "done", "failed", "cancelled")


class JobError(AnimestreamError, ValueError):
    """A job the queue refuses or does not know; ``status`` is the HTTP status that says so."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Job:
    id: str
    folder: Path
    upload: Path
    result: Path
    style: str
    max_side: int | None
    deflicker: bool = False  # wrap the engine in stream.deflicker.Deflicker
    state: str = "queued"
    frames_done: int = 0
    frames_total: int | None = None
    fps: float = 0.0
    error: str = ""
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def as_dict(self) -> dict:
        eta = None
        if self.state == "running" and self.fps > 0 and self.frames_total:
            eta = round(max(0, self.frames_total - self.frames_done) / self.fps, 1)
        return {"id": self.id, "state": self.state, "style": self.style, "deflicker": self.deflicker,
                "frames_done": self.frames_done,
                "frames_total": self.frames_total, "fps": round(self.fps, 2), "eta_s": eta, "error": self.error,
                "result": f"/v1/jobs/{self.id}/result" if self.state == "done" else None}


Converter = Callable[[Job, Callable[[int, int | None], None]], None]


def converter(build: Callable[[str, int | None], FrameEngine]) -> Converter:
    """The :class:`JobQueue` converter that runs each job through ``build(style, max_side)``'s engine
    (wrapped in :class:`~stream.deflicker.Deflicker` where the job asks for it) and
    :func:`stream.filejob.convert_video`, reporting progress and honouring the job's cancel event."""
    def convert(job: Job, progress: Callable[[int, int | None], None]) -> None:
        from .deflicker import Deflicker
        from .filejob import convert_video

        engine = build(job.style, job.max_side)
        convert_video(job.upload, job.result, Deflicker(engine) if job.deflicker else engine, progress=False,
                      warn=lambda _m: None, keep_partial=False, on_progress=progress, cancel=job.cancel)

    return convert


class JobQueue:
    """Jobs in ``folder``, converted one at a time by ``convert(job, progress)`` on a worker thread."""

    def __init__(self, folder: Path, convert: Converter, *, queue: int = DEFAULT_QUEUE,
                 quota_bytes: int = DEFAULT_QUOTA_BYTES, ttl_s: float = DEFAULT_TTL_S):
        self.folder, self.convert = Path(folder), convert
        self.queue, self.quota_bytes, self.ttl_s = queue, quota_bytes, ttl_s
        self.folder.mkdir(parents=True, exist_ok=True)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closing = False
        self._worker = threading.Thread(target=self._work, name="animestream-jobs", daemon=True)
        self._worker.start()

    # -- limits
    def used_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())

    def check_room(self, size: int | None = None) -> None:
        """Refuse a new job now, before its upload is read, if the queue or the disk quota is full."""
        self.expire()
        with self._lock:
            waiting = sum(j.state == "queued" for j in self._jobs.values())
        if waiting >= self.queue:
            raise JobError(503, f"busy: {waiting} jobs are waiting already, try again later")
        if size is not None and self.used_bytes() + 2 * size > self.quota_bytes:  # the upload and its result
            raise JobError(507, "the job folder is full; try again when earlier results have expired")

    def new_folder(self, suffix: str) -> tuple[str, Path]:
        """A fresh job id and its folder's upload path (``suffix``: the upload's extension)."""
        if suffix.lower() not in VIDEO_EXTENSIONS:
            raise JobError(415, f"a video job takes {', '.join(sorted(VIDEO_EXTENSIONS))} files, not {suffix!r}")
        job_id = uuid.uuid4().hex
        folder = self.folder / job_id
        folder.mkdir()
        return job_id, folder / f"upload{suffix.lower()}"

    # -- jobs
    def submit(self, job_id: str, upload: Path, *, style: str, max_side: int | None, out_suffix: str,
               deflicker: bool = False) -> Job:
        job = Job(job_id, upload.parent, upload, upload.parent / f"result{out_suffix}", style, max_side, deflicker)
        with self._lock:
            self._jobs[job_id] = job
            self._wake.notify()
        return job

    def get(self, job_id: str) -> Job:
        self.expire()
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise JobError(404, f"no job {job_id!r} (finished jobs are kept {self.ttl_s:g} s)")
        return job

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (its files are removed); a finished one is deleted."""
        job = self.get(job_id)
        job.cancel.set()
        with self._lock:
            if job.state in ("queued", "done", "failed", "cancelled"):
                job.state = "cancelled" if job.state == "queued" else job.state
                self._jobs.pop(job_id, None)
                shutil.rmtree(job.folder, ignore_errors=True)
        return job

    def expire(self) -> None:
        now = time.time()
        with self._lock:
            old = [j for j in self._jobs.values() if j.ended is not None and now - j.ended > self.ttl_s]
            for job in old:
                self._jobs.pop(job.id, None)
                shutil.rmtree(job.folder, ignore_errors=True)

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._closing and not any(j.state == "queued" for j in self._jobs.values()):
                    self._wake.wait()
                if self._closing:
                    return
                job = next(j for j in self._jobs.values() if j.state == "queued")
                job.state, job.started = "running", time.time()
            self._run(job)

    def _run(self, job: Job) -> None:
        def progress(done: int, total: int | None) -> None:
            job.frames_done, job.frames_total = done, total
            elapsed = time.time() - (job.started or time.time())
            job.fps = done / elapsed if elapsed > 0 else 0.0

        try:
            self.convert(job, progress)
            state = "cancelled" if job.cancel.is_set() else "done"
        except AnimestreamError as e:
            state, job.error = "failed", str(e)
        except KeyboardInterrupt:
            state = "cancelled"
        with self._lock:
            job.state, job.ended = state, time.time()
            job.upload.unlink(missing_ok=True)  # the upload is not needed any more
            if state == "cancelled":
                self._jobs.pop(job.id, None)
                shutil.rmtree(job.folder, ignore_errors=True)

    def close(self) -> None:
        """Stop the worker after the job in hand (cancelled) and remove every job's files."""
        with self._lock:
            self._closing = True
            for job in self._jobs.values():
                job.cancel.set()
            self._wake.notify_all()
        self._worker.join(30)
        shutil.rmtree(self.folder, ignore_errors=True)
