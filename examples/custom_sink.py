"""Send stylised frames somewhere of your own: anything with write() and write_audio() is a sink.

    python examples/custom_sink.py samples/astronaut_pan.mp4

The Pipeline runs decode, inference and your sink on three threads joined by bounded queues.
write() is called from the consumer thread with a buffer that is reused afterwards: copy what you
keep. drop_stale=True would make it a live pipeline that skips frames instead of waiting.
"""
import sys

import numpy as np

import stream
from stream.sources import VideoSource


class MeanColour:
    """A toy sink: remembers the average colour of each stylised frame."""

    def __init__(self) -> None:
        self.means: list[np.ndarray] = []

    def write(self, frame, image: np.ndarray) -> None:
        self.means.append(image.reshape(-1, 3).mean(axis=0))  # a reduction, so no copy is needed

    def write_audio(self, item) -> None:
        pass  # this sink ignores sound; a muxer would copy the packet here


def main(src: str) -> None:
    engine = stream.Engine("shinkai-lite", max_side=128)
    sink = MeanColour()
    with VideoSource(src) as source:
        stats = stream.Pipeline(source, engine, sink).run()
    first, last = sink.means[0], sink.means[-1]
    print(f"{stats.frames_out} frames; mean RGB first {first.round()} last {last.round()}")


if __name__ == "__main__":
    main(sys.argv[1])
