"""The ``animestream`` command line.

``main(argv)`` returns the exit code instead of exiting, so tests call it in-process:
0 done, 1 an error (one line on stderr), 2 a usage error, 130 interrupted by Ctrl-C.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import warnings
from pathlib import Path

from . import __version__, weights
from .filejob import convert, convert_video
from .deflicker import Deflicker
from .devicejob import ENCODERS
from .calibration import calibrate_style
from .download import OFFICIAL_BLOBS, import_style, pull
from .engine import DEVICES, PRECISIONS, Engine, EngineOptions
from .errors import EXIT_ERROR, AnimestreamError, StyleWarning
from .imageinfo import DEFAULT_MAX_PIXELS
from .live import StyleSwitcher, is_camera
from .sources import DEFAULT_STREAM_TIMEOUT_S, is_image_path, is_url
from .livejob import LiveOptions, run_live
from .pipeline import Stats
from .serve import StyleService
from .signals import Stopped, exit_code, stop_on_signals
from .sinks import DEFAULT_CRF, DEFAULT_PRESET, X264_PRESETS

WEB_INSTALL_HINT = "pip install 'animestream[web]'"
EXIT_INTERRUPTED = 130

EPILOG = """\
examples:
  animestream clip.mp4 anime.mp4                 stylise a video (audio and timestamps kept)
  animestream photo.jpg anime.png                stylise an image
  animestream photos/ anime/                     every image and video in a folder
  animestream clip.mp4 out.mp4 --max-side 256    4x fewer pixels through the model: ~4x faster
  animestream clip.mp4 try.mp4 --start 1:30 --duration 5   five seconds, to try a style first
  animestream 0 --preview                        webcam 0 in a window, real time on a 2-core CPU (hayao-lite)
  animestream weights list                       the styles you can pass to --style
  animestream serve --port 8000                  an HTTP service: POST an image, get it stylised
  animestream batch clips/ --out anime/          many files or a long film on Ray workers (animestream[ray])
  animestream doctor                             this CPU's class and the path each style takes on it

The model runs at most at --max-side pixels on the longest side; the result is scaled back to the
input's size. Ctrl-C during a video keeps a playable file of the frames done so far.
"""


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _crf(text: str) -> int:
    value = _non_negative_int(text)
    if value > 51:
        raise argparse.ArgumentTypeError(f"must be in 0..51, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _seconds(text: str) -> float:
    """Seconds as ``90``, ``90.5``, ``1:30`` or ``0:01:30.5``."""
    parts = text.strip().split(":")
    try:
        if len(parts) > 3 or any(p == "" for p in parts):
            raise ValueError
        fields = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (90, 90.5) or [H:]M:S (1:30), got {text!r}") from None
    if any(f < 0 for f in fields) or any(f >= 60 for f in fields[1:]):
        raise argparse.ArgumentTypeError(f"expected seconds (90, 90.5) or [H:]M:S (1:30), got {text!r}")
    value = 0.0
    for f in fields:
        value = value * 60 + f
    return value


def _mjpeg_address(text: str) -> tuple[str, int]:
    from .mjpeg import parse_address

    try:
        return parse_address(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit() or int(w) == 0 or int(h) == 0:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, e.g. 1280x720, got {text!r}")
    return int(w), int(h)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="animestream", description="Turn videos, images and folders into anime-style ones.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", nargs="?", help="video file, image file, or folder of them")
    p.add_argument("output", nargs="?", help="where to write the result (same kind as the input)")
    p.add_argument("--style", default=None, metavar="NAME|PATH",
                   help="style name (see 'animestream weights list') or a weights file: .safetensors with its "
                        ".json, .onnx (needs animestream[onnx]) or TorchScript .pt (default: "
                        f"{weights.DEFAULT_STYLE}; {weights.DEFAULT_LIVE_STYLE} for a live source)")
    p.add_argument("--max-side", type=_non_negative_int, default=None, metavar="PX",
                   help="cap the longest side the model sees, in pixels; 0 = no cap "
                        "(default: the style's recommendation: 512, 160 for -lite styles)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto = fp16 on CUDA; on the CPU the fastest path for this CPU class that keeps the "
                        "style's quality: int8 where its calibration scores within 0.3 dB of float, else bf16 "
                        "on CPUs with AVX512-BF16/AMX, else fp32, run by the style's narrower student where that "
                        "keeps the quality (hayao-fast for hayao); any other value runs the style's own network "
                        "('animestream doctor' shows the choice and why; default: auto)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="default: cuda when present, else cpu")
    p.add_argument("--threads", type=_non_negative_int, default=0, metavar="N",
                   help="CPU threads for inference (default: 0 = one per core, all but one for -lite styles)")
    p.add_argument("--batch", type=_non_negative_int, default=0, metavar="N",
                   help="file jobs on a GPU: frames per model call (default: 0 = chosen from free GPU memory; "
                        "the CPU runs one at a time, which measured fastest there)")
    p.add_argument("--compile", action="store_true",
                   help="GPU: compile the model with torch.compile first (a one-off cost, reported in "
                        "--stats-json as compile_s; pays on long videos)")
    p.add_argument("--crf", type=_crf, default=DEFAULT_CRF,
                   help="video quality, 0 (lossless) .. 51 (worst), on x264's scale; .webm outputs are VP9 "
                        "and map it onto VP9's (default: %(default)s)")
    p.add_argument("--preset", choices=X264_PRESETS, default=DEFAULT_PRESET, metavar="PRESET",
                   help="encoder speed/size trade-off, ultrafast .. veryslow, x264's names "
                        "(mapped onto VP9's speeds for .webm) (default: %(default)s)")
    p.add_argument("--encoder", choices=ENCODERS, default="auto",
                   help="video encoder: auto (on a GPU, NVENC where the GPU has one, else libx264; on the CPU "
                        "libx264), libx264, or h264_nvenc (an error where it does not open) (default: %(default)s)")
    p.add_argument("--start", type=_seconds, default=0.0, metavar="TIME",
                   help="convert from this point of a video on, in seconds or [H:]M:S (default: its beginning)")
    p.add_argument("--duration", type=_seconds, default=None, metavar="TIME",
                   help="convert only this long a stretch of a video, e.g. 5 to try a style (default: to the end)")
    live = p.add_argument_group("live", "a camera (0, /dev/video2), a stream URL (rtsp://, http://) or a "
                                "file with --live; any mix of OUTPUT (recording), --preview, --vcam and --mjpeg")
    live.add_argument("--live", action="store_true",
                      help="play a file at its own frame rate, as a camera would deliver it")
    live.add_argument("--preview", action="store_true", help="show a window (keys: q quit, s/1-9 style, "
                      "m mirror, space split view)")
    live.add_argument("--vcam", action="store_true", help="send to a virtual camera (OBS, Zoom, browsers)")
    live.add_argument("--vcam-backend", metavar="NAME", help="pyvirtualcam backend (v4l2loopback, obs, ...)")
    live.add_argument("--vcam-device", metavar="DEV", help="virtual camera device, e.g. /dev/video10")
    live.add_argument("--vcam-fps", type=_positive_float, default=0.0, metavar="FPS",
                      help="virtual camera rate (default: the source's)")
    live.add_argument("--camera-size", type=_size, default=(0, 0), metavar="WxH",
                      help="size to ask the camera for, e.g. 1280x720 (default: the camera's)")
    live.add_argument("--camera-fps", type=_positive_float, default=30.0, metavar="FPS",
                      help="rate to ask the camera for (default: %(default)s)")
    live.add_argument("--mjpeg", type=_mjpeg_address, default=None, metavar="[HOST:]PORT",
                      help="serve the stylised frames as MJPEG on http://HOST:PORT/ (a browser, or OBS's Browser "
                           "or Media Source: a virtual camera without drivers); HOST defaults to 127.0.0.1")
    live.add_argument("--timeout", type=_positive_float, default=DEFAULT_STREAM_TIMEOUT_S, metavar="SECONDS",
                      help="a network stream that sends nothing for this long has stalled and the run ends; it "
                           "gets twice as long to answer at all (default: %(default)s)")
    p.add_argument("--max-pixels", type=_non_negative_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help="refuse input images larger than N pixels (width x height), checked in the file's header "
                        "before decoding; 0 = no limit (default: %(default)s)")
    p.add_argument("--no-recursive", dest="recursive", action="store_false",
                   help="a folder INPUT: only its own files, not its subfolders' (default: the whole tree, mirrored "
                        "in OUTPUT)")
    p.add_argument("--strict", action="store_true",
                   help="treat a damaged video as an error and write nothing (default: skip frames that do not "
                        "decode, warn, and keep the rest)")
    p.add_argument("--deflicker", action="store_true",
                   help="steadier video: carry the previous result along the input's motion (optical flow) "
                        "and blend it in where that motion explains the input, up to the input's own noise; "
                        "what appears or changes takes the new result at once (no ghosting)")
    p.add_argument("--stats-json", type=Path, metavar="PATH", help="write run statistics as one JSON object")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--list-styles", action="store_true", help="list styles and exit (same as 'weights list')")
    p.add_argument("--version", action="version", version=f"animestream {__version__}")
    return p


def _warn(message: str) -> None:
    print(f"animestream: {message}", file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our own warnings as one line each, without Python's file and line decoration."""
    if issubclass(category, StyleWarning):
        _warn(f"warning: {message}")
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def _engine_options(args: argparse.Namespace) -> EngineOptions:
    """The engine options of a command line (main's and serve's share these four flags)."""
    return EngineOptions(max_side=args.max_side, precision=args.precision, device=args.device, threads=args.threads)


def _print_styles() -> int:
    rows = [("NAME", "ORIGIN", "QUALITY", "INT8", "LICENSE")]
    for s in weights.list_styles():
        q = s.meta.get("quality", {})
        if "psnr_student" in q:
            quality = f"{q['psnr_student']:.1f} dB (grade {q['psnr_grade']:.1f})"
        elif "psnr_vs_teacher" in q:
            quality = f"{q['psnr_vs_teacher']:.1f} dB vs {q['teacher']}"
        else:
            quality = "-"
        score = weights.int8_psnr(s) if s.calibrated else None
        int8 = f"{score:.1f} dB" if score is not None else "calibrated" if s.calibrated else "-"
        mark = {weights.DEFAULT_STYLE: " (default)", weights.DEFAULT_LIVE_STYLE: " (live default)"}.get(s.name, "")
        if s.meta.get("variant_of"):
            mark = f" (narrower {s.meta['variant_of']})"
        rows.append((s.name + mark,
                     s.origin, quality, int8, s.meta.get("license", "-")))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4])
    return 0


def weights_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="animestream weights", description="Manage styles.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list styles: name, origin, validation quality, INT8 calibration, license")
    pull_p = sub.add_parser("pull", help="download an official AnimeGANv2 checkpoint as style official-NAME",
                          description="Download an official checkpoint from bryandlee/animegan2-pytorch, verify "
                          "its git blob id and register it as style official-NAME. Set ANIMESTREAM_WEIGHTS_URL "
                          "to use a mirror.")
    pull_p.add_argument("name", choices=sorted(OFFICIAL_BLOBS), metavar="NAME",
                      help=f"one of: {', '.join(sorted(OFFICIAL_BLOBS))}")
    imp = sub.add_parser("import", help="make a weights file (TorchScript, official state_dict, ONNX) a style",
                         description="Register a weights file as a style. AnimeGANv2-architecture generators "
                         "(TorchScript or a state_dict) are stored as safetensors and load on any torch; ONNX "
                         "generators run through onnxruntime (pip install 'animestream[onnx]'). An ONNX file "
                         "is taken to be like the AnimeGANv3 releases (NHWC, RGB in [-1, 1], sides a multiple "
                         "of 8) unless --io declares otherwise.")
    imp.add_argument("file", type=Path, help="a .pt (TorchScript or AnimeGANv2 state_dict) or .onnx file")
    imp.add_argument("--name", required=True, help="the style name to register it under")
    imp.add_argument("--license", default="unknown (imported file)", help="license to record in the sidecar")
    imp.add_argument("--io", type=Path, metavar="JSON",
                     help='for an .onnx file: its input/output, e.g. {"layout": "NCHW", "channels": "BGR", '
                          '"range": [-1, 1], "size_multiple": 4}, or an entry of a teachers.json manifest')
    exp = sub.add_parser("export", help="write a style as a TorchScript file (the format of earlier releases)",
                         description="Write a style's generator as TorchScript (torch.jit.load reads it). Styles "
                         "themselves are stored as safetensors, which load on any torch version; a TorchScript "
                         "file loads on the version that wrote it and later ones.")
    exp.add_argument("style", metavar="NAME|PATH", help="style name or weights file")
    exp.add_argument("out", type=Path, help="the .pt file to write")
    cal = sub.add_parser("calibrate", help="measure a style's activation ranges on photos, for --precision int8",
                         description="Run the style in float on every image in a folder and save the range of "
                         "each tensor the INT8 path quantizes, as NAME.ranges beside the style. Use a few dozen "
                         "varied photos: a range narrower than real input clips it. Styles with ranges run in INT8 "
                         "by default on CPUs with VNNI.")
    cal.add_argument("style", metavar="NAME|PATH", help="style name or .pt file")
    cal.add_argument("--photos", type=Path, required=True, metavar="FOLDER", help="folder of .jpg/.png photos")
    cal.add_argument("--max-side", type=_non_negative_int, default=None, metavar="PX",
                     help="longest side the photos are scaled to (default: the style's recommended cap)")
    cal.add_argument("--float", action="append", default=[], metavar="LAYER", dest="float_layers",
                     help="run this layer of the INT8 path in float (repeatable), e.g. block_c.1, the first "
                          "residual block, where 8-bit rounding costs the most; slower by that layer's fp32 time")
    args = p.parse_args(argv)
    try:
        if args.command == "export":
            if not args.out.parent.is_dir():
                p.error(f"{args.out}: the folder {args.out.parent} does not exist")
            print(f"animestream: wrote {weights.export_torchscript(weights.resolve(args.style), args.out)}",
                  file=sys.stderr)
            return 0
        if args.command == "calibrate":
            if not args.photos.is_dir():
                p.error(f"--photos {args.photos}: not a folder")
            out, count = calibrate_style(args.style, args.photos, args.max_side or None, args.float_layers)
            print(f"animestream: calibrated on {count} photos: {out}", file=sys.stderr)
            return 0
        if args.command == "pull":
            style = pull(args.name)
        elif args.command == "import":
            io = None
            if args.io is not None:
                try:
                    io = json.loads(args.io.read_text())
                except (OSError, ValueError) as e:
                    p.error(f"--io {args.io}: not a readable JSON file ({e})")
            style = import_style(args.file, args.name, license=args.license, io=io)
        else:
            return _print_styles()
    except AnimestreamError as e:
        print(f"animestream: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(f"animestream: style {style.name!r} is ready: {style.path}", file=sys.stderr)
    return 0


def _run_live(args: argparse.Namespace, engine: Engine) -> Stats:
    others = [s.name for s in weights.list_styles() if s.name != engine.style]
    switcher = StyleSwitcher([engine.spec, *others], engine, engine.options)
    options = LiveOptions(
        output=Path(args.output) if args.output else None, preview=args.preview, vcam=args.vcam,
        vcam_backend=args.vcam_backend, vcam_device=args.vcam_device, vcam_fps=args.vcam_fps,
        camera_width=args.camera_size[0], camera_height=args.camera_size[1], camera_fps=args.camera_fps,
        paced=args.live, crf=args.crf, preset=args.preset, deflicker=args.deflicker, timeout=args.timeout,
        mjpeg=args.mjpeg)
    say = (lambda _m: None) if args.quiet else (lambda m: print(f"animestream: {m}", file=sys.stderr))
    return run_live(args.input, switcher, options, announce=say)


def _port(text: str) -> int:
    value = _non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 0..65535, got {value}")
    return value


def serve_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="animestream serve", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve the web page and API: images, video jobs and the webcam live, in any browser. "
                    "Needs " + WEB_INSTALL_HINT + ".",
        epilog="examples:\n"
               "  animestream serve                              then open http://127.0.0.1:8000/\n"
               "  animestream serve --host 0.0.0.0               phones on this network too (no authentication!)\n"
               "  curl --data-binary @photo.jpg -o anime.png 'http://127.0.0.1:8000/v1/stylize?style=hayao'\n\n"
               "The API is described at /docs. One image is stylised at a time; up to --queue more wait, and the\n"
               "rest are answered 503 with Retry-After. Video jobs run one at a time, in --jobs-dir.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 for every interface "
                   "(default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=_port, default=8000, help="0 picks a free port (default: 8000)")
    p.add_argument("--style", default=weights.DEFAULT_STYLE, metavar="NAME|PATH",
                   help="style of requests that name none (default: %(default)s); requests may name any "
                        "registered style, never a path")
    p.add_argument("--max-side", type=_non_negative_int, default=None, metavar="PX",
                   help="cap of requests that set no max_side (default: the style's recommendation)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--threads", type=_non_negative_int, default=0, metavar="N", help="0 = one per core")
    p.add_argument("--queue", type=_non_negative_int, default=4, metavar="N",
                   help="image requests that may wait while one is stylised (default: %(default)s)")
    p.add_argument("--jobs-dir", type=Path, default=None, metavar="DIR",
                   help="where video jobs keep uploads and results (default: a temporary folder, removed on exit)")
    p.add_argument("--jobs-ttl", type=_positive_float, default=3600.0, metavar="S",
                   help="seconds a finished job's result is kept (default: %(default)s)")
    p.add_argument("--jobs-quota", type=_positive_float, default=4.0, metavar="GB",
                   help="disk space video jobs may use in all (default: %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true", help="no line per request")
    args = p.parse_args(argv)
    try:
        from .webapp import WebServer, create_app
    except ImportError:
        print(f"animestream: error: the web service needs FastAPI and uvicorn: {WEB_INSTALL_HINT}", file=sys.stderr)
        return EXIT_ERROR
    import tempfile

    from .jobs import JobQueue, converter

    options = _engine_options(args)

    def build(style: str, max_side: int | None) -> Engine:
        return Engine(first.spec if style == first.style else style,  # the default may be a file
                      dataclasses.replace(options, max_side=options.max_side if max_side is None else max_side))

    log = None if args.quiet else (lambda m: print(f"animestream: {m}", file=sys.stderr, flush=True))
    try:
        first = Engine(args.style, options)  # fails now, not at the first request, if the style is unusable
    except AnimestreamError as e:
        print(f"animestream: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    service = StyleService(build, default_style=first.style, queue=args.queue)
    service.adopt(first.style, None, first)
    jobs = JobQueue(args.jobs_dir or Path(tempfile.mkdtemp(prefix="animestream-jobs-")), converter(build),
                    ttl_s=args.jobs_ttl, quota_bytes=int(args.jobs_quota * 2**30))
    try:
        server = WebServer(create_app(service, jobs, log=log), args.host, args.port,
                           on_stop=lambda: print("animestream: stopping", file=sys.stderr, flush=True))
    except OSError as e:
        jobs.close()
        print(f"animestream: error: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return EXIT_ERROR
    print(f"animestream: serving {first.style!r} on {server.url} (the page at /, the API at /docs; Ctrl-C stops)",
          file=sys.stderr, flush=True)
    try:
        server.serve()
    finally:
        jobs.close()
    return 0


def batch_main(argv: list[str]) -> int:
    from .batch import DEFAULT_SEGMENT_S, INSTALL_HINT, BatchOptions, run_batch

    p = argparse.ArgumentParser(
        prog="animestream batch", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Convert many files, or one long film, on a Ray cluster: workers load the engine once and "
                    "convert file after file; a video longer than --segment is cut at key frames into pieces "
                    "converted on different workers and joined by stream copy. Needs " + INSTALL_HINT + ".",
        epilog="examples:\n"
               "  animestream batch clips/ --out anime/                   an embedded Ray on this machine\n"
               "  animestream batch @list.txt 'film/*.mkv' --out /mnt/shared/anime --ray auto --gpus-per-worker 0.5\n\n"
               "Outputs mirror the inputs' folders under --out, which every worker must be able to write (a local\n"
               "folder with --ray local, a shared file system on a cluster). A second run skips what is complete.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders, glob patterns, or @FILE listing paths")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (see below)")
    p.add_argument("--ray", default="local", metavar="local|auto|ADDRESS",
                   help="local: start an embedded Ray here; auto or ADDRESS (host:port): join a cluster "
                        "(default: %(default)s)")
    p.add_argument("--workers", type=_non_negative_int, default=0, metavar="N",
                   help="workers (default: 0 = as many as the cluster's CPUs or GPUs allow)")
    p.add_argument("--cpus-per-worker", type=_positive_float, default=None, metavar="N",
                   help="CPUs each worker reserves, also its model threads (default: every core of this machine)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="F", help="GPUs each worker reserves; "
                   "fractions share one (default: 0)")
    p.add_argument("--segment", type=_positive_float, default=DEFAULT_SEGMENT_S, metavar="SECONDS",
                   help="cut longer videos into pieces of about this length (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="convert again what is already in --out "
                   "(default: resume, skipping complete outputs)")
    p.add_argument("--report", type=Path, metavar="FILE", help="write one JSON line per input: status, frames, "
                   "seconds, worker, error")
    p.add_argument("--style", default=weights.DEFAULT_STYLE, metavar="NAME|PATH")
    p.add_argument("--max-side", type=_non_negative_int, default=None, metavar="PX")
    p.add_argument("--precision", choices=PRECISIONS, default="auto")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--crf", type=_crf, default=DEFAULT_CRF)
    p.add_argument("--preset", choices=X264_PRESETS, default=DEFAULT_PRESET, metavar="PRESET")
    p.add_argument("--deflicker", action="store_true", help="steadier video, as the single command's --deflicker "
                   "(each piece of a cut video first runs the filter over the pictures before it)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    cpus = args.cpus_per_worker or float(os.cpu_count() or 1)
    options = BatchOptions(out=args.out, style=args.style, ray=args.ray, workers=args.workers,
                           engine=EngineOptions(max_side=args.max_side, precision=args.precision,
                                                device=args.device, threads=max(1, int(cpus))),
                           cpus_per_worker=cpus, gpus_per_worker=args.gpus_per_worker, segment_s=args.segment,
                           overwrite=args.overwrite, crf=args.crf, preset=args.preset, report=args.report,
                           deflicker=args.deflicker)
    with stop_on_signals():
        try:
            outcomes = run_batch(args.inputs, options, progress=not args.quiet)
        except AnimestreamError as e:
            print(f"animestream: error: {e}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt as e:
            print(f"animestream: {_stopped_by(e)}: complete outputs kept in {args.out}", file=sys.stderr)
            return exit_code(e)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    for o in outcomes:
        if o.status == "failed":
            print(f"animestream: error: {o.error}", file=sys.stderr)
    print(f"animestream: batch: {counts['done']} converted, {counts['skipped']} already there, "
          f"{counts['failed']} failed ({args.out})", file=sys.stderr)
    return EXIT_ERROR if counts["failed"] else 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    previous, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        return _main(argv)
    finally:
        warnings.showwarning = previous


def _main(argv: list[str]) -> int:
    if argv[:1] == ["weights"]:
        return weights_main(argv[1:])
    if argv[:1] == ["serve"]:
        return serve_main(argv[1:])
    if argv[:1] == ["batch"]:
        return batch_main(argv[1:])
    if argv[:1] == ["doctor"]:
        from . import doctor

        return doctor.main(argv[1:])
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    if args.list_styles:
        return _print_styles()
    if args.input is None:
        parser.error("give an INPUT, e.g. 'animestream clip.mp4 anime.mp4' or 'animestream 0 --preview'")
    is_live = args.live or args.preview or args.vcam or args.mjpeg or is_camera(args.input) or is_url(args.input)
    if not is_live and args.output is None:
        parser.error("give an OUTPUT, e.g. 'animestream clip.mp4 anime.mp4'")
    if is_live and not (args.output or args.preview or args.vcam or args.mjpeg):
        parser.error("a live source needs an OUTPUT to record to, --preview, --vcam or --mjpeg")
    windowed = args.start > 0 or args.duration is not None
    if windowed:
        if args.duration == 0:
            parser.error("--duration must be more than 0 seconds")
        if is_live or Path(args.input).is_dir() or is_image_path(args.input):
            parser.error("--start and --duration apply to converting one video file")
    if args.stats_json is not None and not (args.stats_json.parent.is_dir() and not args.stats_json.is_dir()):
        parser.error(f"--stats-json {args.stats_json}: the folder does not exist or the path is a folder")
    with stop_on_signals() as received:
        try:
            options = dataclasses.replace(_engine_options(args), batch=args.batch, compile=args.compile)
            style = args.style or (weights.DEFAULT_LIVE_STYLE if is_live else weights.DEFAULT_STYLE)
            engine = Engine(style, options)
            if is_live:
                stats = _run_live(args, engine)
            else:
                job = Deflicker(engine) if args.deflicker else engine
                if windowed:
                    stats = convert_video(args.input, args.output, job, crf=args.crf, preset=args.preset,
                                          encoder=args.encoder, progress=not args.quiet, start=args.start,
                                          duration=args.duration, strict=args.strict)
                else:
                    stats = convert(args.input, args.output, job, crf=args.crf, preset=args.preset,
                                    encoder=args.encoder, progress=not args.quiet, max_pixels=args.max_pixels,
                                    strict=args.strict, recursive=args.recursive)
        except AnimestreamError as e:
            print(f"animestream: error: {e}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt as e:
            print(f"animestream: {_stopped_by(e)}: nothing written", file=sys.stderr)
            return exit_code(e)
    if args.stats_json:
        args.stats_json.write_text(json.dumps(stats.as_dict()) + "\n")
    if stats.interrupted:
        last = signal_name(received[-1]) if received else "interrupted"
        if "files_done" in stats.extra:  # a folder: the file in progress is not kept
            done = f"{stats.extra['files_done']} complete files of {stats.extra['files']}"
        else:
            done = f"{stats.frames_out} frames"
        print(f"animestream: {last}: wrote {done} to {args.output or 'the live sinks'}", file=sys.stderr)
        return 128 + received[-1] if received else EXIT_INTERRUPTED
    if not args.quiet:
        dropped = f", {stats.dropped} dropped" if stats.dropped else ""
        where = args.output or "the live sinks"
        if stats.extra.get("kind") == "image":
            print(f"animestream: wrote {where} (1 frame in {stats.wall_s:.2f} s, "
                  f"{stats.latency_ms_p95:.0f} ms in the model)", file=sys.stderr)
        else:
            print(f"animestream: wrote {where} ({stats.frames_out} frames{dropped}, {stats.fps:.1f} fps, "
                  f"latency p95 {stats.latency_ms_p95:.0f} ms)", file=sys.stderr)
    return 0


def signal_name(signum: int) -> str:
    """How the summary line names a stop: "stopped by SIGTERM"."""
    return f"stopped by {signal.Signals(signum).name}"


def _stopped_by(e: KeyboardInterrupt) -> str:
    return signal_name(e.signum) if isinstance(e, Stopped) else "interrupted"
