"""``python -m stream`` and the ``animestream`` command: the CLI, with Ctrl-C during start-up handled too.

Importing PyTorch and PyAV takes a second or more; a Ctrl-C (or SIGTERM) in that time used to print
a traceback from deep inside an import. Here it ends the program with the usual exit code.
"""
from __future__ import annotations

import signal
import sys


def run() -> int:
    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop) if hasattr(signal, "SIGTERM") else None
    try:
        from .cli import main
    except KeyboardInterrupt:
        print("animestream: interrupted while starting", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return main()


if __name__ == "__main__":
    sys.exit(run())
