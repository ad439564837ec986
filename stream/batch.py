"""``animestream batch``: many files, or one long film, on every CPU and GPU of a Ray cluster.

Workers are Ray actors that each build the engine once and convert file after file; a worker gets
the next job when it is done with its last one. A worker whose process dies, at any point (loading its
engine, mid-file, between files, during a piece), is replaced by a new one and its job queued again,
up to :data:`RETRIES` times per job; a job that kills its worker every time is reported as failed and
the others go on. (Ray's own actor restarts and task retries are off: a restarted actor's lost task is
not resubmitted by an ActorPool, so the batch tracks its tasks itself.) A video longer
than ``segment_s`` seconds is cut at key frames into pieces that run on different workers and are then
joined by stream copy (:mod:`stream.segments`), so the result is what a single-process conversion gives.

Outputs are written where every worker can write: a local folder for the embedded Ray (``--ray
local``), a shared file system for a cluster. Each output is written to a hidden temporary file and
renamed when complete, so a killed worker leaves no partial output under a final name, and a second
run of the same command skips what is complete (``overwrite=False``).

Ray is an optional extra: ``pip install 'animestream[ray]'``.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .engine import EngineOptions, EngineWrapper
from .errors import AnimestreamError, SinkError, SourceError
from .sinks import VIDEO_EXTENSIONS, remove_stale_temp_files
from .sources import IMAGE_EXTENSIONS, is_image_path

INSTALL_HINT = "pip install 'animestream[ray]'"
DEFAULT_SEGMENT_S = 60.0  # a video longer than this is cut into pieces of about this length
RETRIES = 2  # times a job whose worker died is run again (on a new worker) before it counts as failed
# Test hook: the path of a JSON plan that makes workers kill themselves (SIGKILL) at given points of their
# work, as a crash or the OOM killer would (see _die_here).
KILL_PLAN_ENV = "ANIMESTREAM_TEST_KILL"
KILL_POINTS = ("init", "start", "mid", "end")  # loading the engine, before a job, mid-job, after its output


class BatchError(AnimestreamError, RuntimeError):
    """The batch could not run (no Ray, an unreachable cluster, an output folder workers cannot write)."""


@dataclass(frozen=True)
class Job:
    """One input and where its output goes; a ``piece`` of a long video, or the whole file."""

    src: str
    dst: str
    piece: tuple[int, int, int | None, int | None] | None = None  # (index, first, end, warm pts): a Piece


@dataclass
class Outcome:
    """What happened to one input: the line written to the report."""

    input: str
    output: str
    status: str  # done, skipped, failed
    frames: int = 0
    seconds: float = 0.0
    worker: str = ""
    error: str = ""
    pieces: int = 0


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs. ``ray``: ``local`` (an embedded Ray on this machine), ``auto`` or an address
    (an existing cluster). ``workers`` 0: as many as the cluster's CPUs (or GPUs) allow."""

    out: Path
    engine: EngineOptions = field(default_factory=EngineOptions)
    style: str = ""
    ray: str = "local"
    workers: int = 0
    cpus_per_worker: float = 0.0  # 0: the engine's threads
    gpus_per_worker: float = 0.0
    segment_s: float = DEFAULT_SEGMENT_S
    overwrite: bool = False
    crf: int = 18
    preset: str = "veryfast"
    report: Path | None = None
    deflicker: bool = False  # each file (or piece) through stream.deflicker.Deflicker


def _ray():
    try:
        import ray
    except ImportError:
        raise BatchError(f"the batch command runs on Ray: {INSTALL_HINT}") from None
    return ray


def expand_inputs(specs: Iterable[str]) -> list[tuple[Path, Path]]:
    """(input file, output path relative to the output folder) for files (their name), folders (their
    tree, mirrored, as ``animestream FOLDER OUT`` does), glob patterns and ``@list.txt`` (one path per
    line). Hidden files are not inputs; two inputs that would land on one output are an error."""
    found: list[tuple[Path, Path]] = []
    media = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS

    def add_file(path: Path, rel: Path) -> None:
        if path.suffix.lower() in media and not path.name.startswith("."):
            found.append((path, rel))

    for spec in specs:
        if spec.startswith("@"):
            try:
                lines = Path(spec[1:]).read_text().splitlines()
            except OSError as e:
                raise SourceError(f"{spec[1:]}: cannot read the list ({e.strerror or e})") from None
            found += expand_inputs(line.strip() for line in lines if line.strip() and not line.startswith("#"))
            continue
        path = Path(spec)
        if path.is_dir():
            for folder, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    add_file(Path(folder) / name, (Path(folder) / name).relative_to(path))
        elif path.is_file():
            add_file(path, Path(path.name))
        else:
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                raise SourceError(f"{spec}: no such file, folder or matching path")
            for m in matches:
                if Path(m).is_file():
                    add_file(Path(m), Path(Path(m).name))
    seen: dict[Path, Path] = {}
    for src, rel in found:
        if rel in seen and seen[rel] != src:
            raise SourceError(f"{src} and {seen[rel]} would both be written to {rel}; give them apart")
        seen[rel] = src
    return [(src, rel) for rel, src in seen.items()]


def job_name(job: Job) -> str:
    """How the kill hook and messages name a job: the input's file name, ``#N`` for piece N."""
    return Path(job.src).name + (f"#{job.piece[0]}" if job.piece is not None else "")


def _die_here(point: str, name: str = "") -> None:
    """The test hook: SIGKILL this process where the plan in ``$ANIMESTREAM_TEST_KILL`` says so. The plan
    is ``{"marks": FOLDER, "kills": [{"point": P, "job": NAME or "*", "times": N}, ...]}``: die at ``point``
    (one of :data:`KILL_POINTS`; ``init`` ignores ``job``) of job ``name``, ``times`` times in all, counted
    with a marker file per death in ``marks`` (-1: every time). Without the variable this does nothing."""
    path = os.environ.get(KILL_PLAN_ENV)
    if not path:
        return
    try:
        plan = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return  # no plan now: nothing to do
    for number, kill in enumerate(plan.get("kills", [])):
        if kill.get("point") != point or (point != "init" and kill.get("job", "*") not in ("*", name)):
            continue
        times = int(kill.get("times", 1))
        for n in range(times):
            try:
                os.close(os.open(Path(plan["marks"]) / f"kill{number}.{n}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                break
            except FileExistsError:
                continue
        else:
            if times >= 0:
                continue  # killed as often as planned
        os.kill(os.getpid(), signal.SIGKILL)


class _DiesMidJob(EngineWrapper):
    """The engine, with the test hook's ``mid`` point at the ``at``-th frame of the job ``name``."""

    def __init__(self, engine, name: str, at: int):
        self.engine, self.name, self.at, self.seen = engine, name, at, 0

    def wrapped(self):
        return self.engine

    def reset(self) -> None:
        self.engine.reset()

    def __call__(self, image):
        self.seen += 1
        if self.seen == self.at:
            _die_here("mid", self.name)
        return self.engine(image)


def _converter_class(ray):
    """The worker actor: builds the engine once, then converts job after job."""

    class Converter:
        def __init__(self, style: str, options: EngineOptions, out: str, crf: int, preset: str,
                     deflicker: bool = False):
            from .engine import Engine

            probe = Path(out) / f".animestream-write-test.{os.getpid()}"
            try:
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as e:
                raise BatchError(f"{out}: this worker ({os.uname().nodename}) cannot write there "
                                 f"({e.strerror or e}); outputs must go to a folder every worker can write") from None
            _die_here("init")
            self.engine = Engine(style, options)
            self.crf, self.preset, self.deflicker = crf, preset, deflicker
            self.name = f"{os.uname().nodename}:{os.getpid()}"

        def pid(self) -> int:
            return os.getpid()

        def run(self, job: Job) -> dict:
            from . import segments
            from .filejob import convert_image, convert_video

            t0 = time.perf_counter()
            name = job_name(job)
            _die_here("start", name)
            dst = Path(job.dst)
            dst.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(dst)  # a worker killed earlier left these
            engine = self.engine
            if self.deflicker:
                from .deflicker import Deflicker

                engine = Deflicker(engine)  # a fresh history for each file or piece (warmed up: convert_piece)
            if os.environ.get(KILL_PLAN_ENV):  # the hook's mid-job point: halfway through the frames
                engine = _DiesMidJob(engine, name, max(1, _frame_count(Path(job.src), job.piece) // 2))
            try:
                if job.piece is not None:
                    piece = segments.Piece(*job.piece)
                    remove_stale_temp_files(piece.name(dst))
                    stats = segments.convert_piece(job.src, dst, piece, engine, crf=self.crf, preset=self.preset,
                                                   preroll=segments.PREROLL_FRAMES if self.deflicker else 0)
                elif is_image_path(job.src):
                    stats = convert_image(job.src, dst, engine, warn=lambda _m: None)
                else:
                    stats = convert_video(job.src, dst, engine, crf=self.crf, preset=self.preset,
                                          progress=False, warn=lambda _m: None, keep_partial=False)
            except AnimestreamError as e:
                return {"job": job, "ok": False, "error": str(e), "worker": self.name,
                        "seconds": time.perf_counter() - t0}
            _die_here("end", name)
            return {"job": job, "ok": True, "frames": stats.frames_out, "worker": self.name,
                    "seconds": time.perf_counter() - t0}

    return Converter


def _frame_count(src: Path, piece: tuple[int, int, int | None, int | None] | None = None) -> int:
    """Frames of ``src`` (1 for an image, 0 if unknown), or of one piece of it (counted by demuxing)."""
    from .sources import VideoSource

    if is_image_path(src):
        return 1
    if piece is not None:
        import av

        _, first, end, _warm = piece
        try:
            with av.open(str(src)) as container:
                video = container.streams.video[0]
                return sum(1 for p in container.demux(video) if p.pts is not None and p.pts >= first
                           and (end is None or p.pts < end))
        except (av.error.FFmpegError, IndexError):
            return 0
    try:
        with VideoSource(src) as source:
            return source.frame_count or 0
    except SourceError:
        return 0


def run_batch(inputs: list[str], options: BatchOptions, *, progress: bool = True,
              warn: Callable[[str], None] | None = None) -> list[Outcome]:
    """Convert ``inputs`` into ``options.out``; returns one :class:`Outcome` per input (also written to
    ``options.report`` as JSON lines). Bad inputs are reported and never stop the batch."""
    from . import segments

    ray = _ray()
    say = warn or (lambda m: print(f"animestream: {m}", file=sys.stderr))
    out = options.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SinkError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    pairs = expand_inputs(inputs)
    if not pairs:
        raise SourceError("no images or videos among the inputs")

    outcomes: dict[str, Outcome] = {}
    jobs: list[Job] = []
    pieces: dict[str, list[segments.Piece]] = {}
    for src, rel in pairs:
        dst = out / rel
        outcome = Outcome(str(src), str(dst), "pending")
        outcomes[str(src)] = outcome
        if dst.exists() and not options.overwrite:
            outcome.status = "skipped"
            continue
        if not is_image_path(src) and dst.suffix.lower() in VIDEO_EXTENSIONS:
            try:
                plan = segments.plan(src, options.segment_s)
            except SourceError as e:
                outcome.status, outcome.error = "failed", str(e)
                continue
            if len(plan) > 1:
                pieces[str(src)] = plan
                outcome.pieces = len(plan)
                jobs += [Job(str(src), str(dst), (p.index, p.first, p.end, p.warm)) for p in plan]
                continue
        jobs.append(Job(str(src), str(dst)))
    total_frames = sum(_frame_count(Path(j.src)) for j in jobs if j.piece is None) + sum(
        _frame_count(Path(s)) for s in pieces)

    if jobs:
        own = not ray.is_initialized()  # else a caller's Ray (one per test module): used, left running
        if own:
            _init_ray(ray, options)
        try:
            _run_jobs(ray, jobs, options, outcomes, total_frames, progress, say)
        finally:
            if own:
                ray.shutdown()
    for src, plan in pieces.items():
        outcome = outcomes[src]
        if outcome.status == "pending":
            dst = Path(outcome.output)
            try:
                outcome.frames = segments.join(src, [p.name(dst) for p in plan], dst, warn=say)
                outcome.status = "done"
            except AnimestreamError as e:
                outcome.status, outcome.error = "failed", str(e)
        segments.remove_pieces(Path(outcome.output), plan)
    results = list(outcomes.values())
    if options.report is not None:
        with open(options.report, "w") as f:
            for o in results:
                f.write(json.dumps(dataclasses.asdict(o)) + "\n")
    return results


def _init_ray(ray, options: BatchOptions) -> None:
    kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if options.ray == "local":
            ray.init(**kwargs)
        else:
            ray.init(address=options.ray, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise BatchError(f"cannot start or join Ray ({options.ray}): {str(e).splitlines()[0]}") from None


def _worker_count(ray, options: BatchOptions, cpus: float) -> int:
    if options.workers:
        return options.workers
    resources = ray.cluster_resources()
    if options.gpus_per_worker:
        return max(1, int(resources.get("GPU", 0) / options.gpus_per_worker))
    return max(1, int(resources.get("CPU", 1) / cpus))


def _run_jobs(ray, jobs: list[Job], options: BatchOptions, outcomes: dict[str, Outcome], total_frames: int,
              progress: bool, say: Callable[[str], None]) -> None:
    """Run ``jobs`` on workers, one job per worker at a time. A worker that dies is replaced and its job
    queued again (:data:`RETRIES`); a worker whose engine cannot be built (a bad style, an output folder
    it cannot write) stops the batch with a :class:`BatchError`."""
    from tqdm import tqdm

    cpus = options.cpus_per_worker or float(options.engine.threads or 1)
    actor = ray.remote(num_cpus=cpus, num_gpus=options.gpus_per_worker, max_restarts=0,
                       max_task_retries=0)(_converter_class(ray))
    engine_options = dataclasses.replace(options.engine, threads=options.engine.threads or max(1, int(cpus)))

    def new_worker():
        return actor.remote(options.style, engine_options, str(options.out), options.crf, options.preset,
                            options.deflicker)

    idle = [new_worker() for _ in range(min(len(jobs), _worker_count(ray, options, cpus)))]
    waiting: deque[Job] = deque(jobs)
    running: dict = {}  # task ref -> (worker, job)
    deaths: dict[Job, int] = {}
    bar = tqdm(total=total_frames or None, unit="frame", desc="batch", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    try:
        while waiting or running:
            while waiting and idle:
                worker, job = idle.pop(), waiting.popleft()
                running[worker.run.remote(job)] = (worker, job)
            [ref], _ = ray.wait(list(running), num_returns=1)
            worker, job = running.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as e:  # ActorDiedError, ActorUnavailableError
                if e.actor_init_failed:  # its constructor raised: every worker would
                    raise BatchError(f"a worker could not start: {str(e).strip().splitlines()[-1][:200]}") from None
                ray.kill(worker)  # unavailable may mean alive: make sure it is gone before replacing it
                idle.append(new_worker())
                deaths[job] = deaths.get(job, 0) + 1
                if deaths[job] <= RETRIES:
                    waiting.append(job)
                    continue
                _remove_partial_output(job)  # the last worker's half-written file: its process is gone
                result = {"job": job, "ok": False, "worker": "",
                          "error": f"{job_name(job)}: its worker died {deaths[job]} times converting it "
                                   f"(killed, or out of memory?)"}
            except ray.exceptions.RayTaskError as e:
                cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else e
                raise BatchError(f"a worker failed: {str(cause).splitlines()[0][:200]}") from None
            else:
                idle.append(worker)
            bar.update(result.get("frames", 0))
            _record(result, outcomes)
            finished = sum(o.status != "pending" for o in outcomes.values())
            bar.set_postfix(files=f"{finished}/{len(outcomes)}")
    except KeyboardInterrupt:
        say("interrupted: stopping the workers; only complete outputs are kept")
        raise
    finally:
        bar.close()
        for worker in idle + [w for w, _ in running.values()]:
            ray.kill(worker)


def _remove_partial_output(job: Job) -> None:
    """Delete the temporary files of ``job``'s output (or piece) that dead workers left: no worker writes
    it any more. (A new worker removes those of dead processes itself when it takes the job again.)"""
    from .segments import Piece

    target = Piece(*job.piece).name(Path(job.dst)) if job.piece is not None else Path(job.dst)
    for tmp in target.parent.glob(f".{target.stem}.*.partial{target.suffix}"):
        try:
            tmp.unlink()
        except OSError:
            pass  # gone already, or a folder we cannot write: a later run removes it


def _record(result: dict, outcomes: dict[str, Outcome]) -> None:
    """Fold one job's result into its input's outcome (the job is found by the worker's answer)."""
    job: Job = result["job"]
    outcome = outcomes[job.src]
    outcome.frames += result.get("frames", 0)
    outcome.seconds += result.get("seconds", 0.0)
    outcome.worker = outcome.worker or result.get("worker", "")
    if not result["ok"]:
        outcome.status, outcome.error = "failed", result["error"]
    elif job.piece is None:
        outcome.status = "done"
