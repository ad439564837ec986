"""Convert a clip from Python and read what the run measured.

    python examples/convert_with_stats.py samples/astronaut_pan.mp4 /tmp/anime.mp4

One Engine can serve many conversions: loading the model and allocating its buffers happen once,
so a batch job should build it once and pass it to every convert() call.
"""
import sys

import stream


def main(src: str, dst: str) -> int:
    # max_side=256: 4x fewer pixels through the model than the default 512, so ~4x faster;
    # the output still has the input's full size (the result is scaled back up).
    engine = stream.Engine("shinkai", max_side=256)
    try:
        stats = stream.convert(src, dst, engine, progress=False)
    except stream.SourceError as e:  # also an OSError: bad or missing input
        print(f"cannot read the input: {e}", file=sys.stderr)
        return 1
    print(f"{stats.frames_out} frames at {stats.fps:.1f} fps on {engine.device} ({engine.precision}), "
          f"latency p95 {stats.latency_ms_p95:.0f} ms, peak memory {stats.peak_rss_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: python {sys.argv[0]} INPUT OUTPUT   (e.g. samples/astronaut_pan.mp4 /tmp/anime.mp4)")
    sys.exit(main(sys.argv[1], sys.argv[2]))
