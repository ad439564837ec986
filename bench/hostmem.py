"""What x264's frame threads and FFmpeg's decoder threads hold in host memory, by thread count: each
measurement in a fresh process, its peak resident memory (``VmHWM``) after minus before the work, MB.

    python bench/hostmem.py [--size 1920x1080] [--frames 40] [--x264 16,12,8] [--decode 17,8,4]

x264 (``veryfast``, crf 18, frame-threaded as a GPU job runs it) encodes ``--frames`` frames of shifting noise
fed as yuv420p; the decoder (thread type AUTO, as ``stream.sources.VideoSource``) decodes a clip of them.
One JSON line per measurement.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import sys, av, numpy as np
def hwm():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024
what, path, w, h, n, threads = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
before = hwm()
if what == "encode":
    c = av.open(path, "w"); s = c.add_stream("libx264", rate=30); s.width, s.height, s.pix_fmt = w, h, "yuv420p"
    s.options = {"crf": "18", "preset": "veryfast", "threads": str(threads)}; s.codec_context.thread_type = "FRAME"
    img = np.random.default_rng(0).integers(0, 255, (h * 3 // 2, w), dtype=np.uint8)
    for i in range(n):
        f = av.VideoFrame.from_ndarray(np.roll(img, i * 4, axis=1), format="yuv420p"); f.pts = i
        for p in s.encode(f): c.mux(p)
    for p in s.encode(): c.mux(p)
    c.close()
else:
    with av.open(path) as c:
        v = c.streams.video[0]; v.thread_type = "AUTO"; v.thread_count = threads
        sum(1 for f in c.decode(video=0) if f.to_ndarray() is not None)
print(round(hwm() - before))
"""


def grew_mb(what: str, path: Path, width: int, height: int, frames: int, threads: int) -> int:
    done = subprocess.run([sys.executable, "-c", CHILD, what, str(path), str(width), str(height), str(frames),
                           str(threads)], capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--x264", default="16,12,8", help="x264 thread counts")
    p.add_argument("--decode", default="17,8,4", help="decoder thread counts")
    args = p.parse_args(argv)
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        for threads in map(int, args.x264.split(",")):
            mb = grew_mb("encode", clip, width, height, args.frames, threads)
            print(json.dumps({"x264_threads": threads, "size": args.size, "grew_mb": mb}), flush=True)
        for threads in map(int, args.decode.split(",")):
            mb = grew_mb("decode", clip, width, height, args.frames, threads)
            print(json.dumps({"decode_threads": threads, "size": args.size, "grew_mb": mb}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
