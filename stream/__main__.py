"""``python -m stream`` and the ``animestream`` command: the CLI, with Ctrl-C during start-up handled too.

Importing PyTorch and PyAV takes a second or more; a Ctrl-C (or SIGTERM, SIGHUP) in that time used to
print a traceback from deep inside an import, or, for SIGHUP, end the process by the signal. Here it
ends the program with one line and exit code 128 + the signal's number. That exit is immediate
(``os._exit``, after flushing): nothing has been written yet, and an import interrupted half-way may
leave the interpreter's own shutdown to re-raise the signal (seen as exit -2 after a SIGTERM). An
extension module whose initialisation the signal interrupted can also fail with an error of its own
(NumPy: "cannot load module more than once per process", 1 in 400 soak runs): after a stop signal,
whatever the start-up import raises ends it the same way.
"""
from __future__ import annotations

import os
import signal
import sys

START_UP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


class _StoppedWhileStarting(BaseException):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _exit_stopped(signum: int) -> None:
    print("animestream: interrupted while starting", file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(128 + signum)


def run() -> int:
    received: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        received.append(signum)  # noted too: an import with a bare except may swallow the exception
        raise _StoppedWhileStarting(signum)

    previous = {}
    for name in START_UP_SIGNALS:
        if hasattr(signal, name):
            signum = getattr(signal, name)
            previous[signum] = signal.signal(signum, stop)
    try:
        try:
            from .cli import main
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    except (_StoppedWhileStarting, KeyboardInterrupt) as e:
        _exit_stopped(e.signum if isinstance(e, _StoppedWhileStarting) else signal.SIGINT)
    except Exception:  # noqa: BLE001 - only after a stop signal: an import it broke fails again otherwise
        if not received:
            raise
        _exit_stopped(received[0])
    if received:  # stopped while a library's import swallowed the exception: stop all the same
        _exit_stopped(received[0])
    return main()


if __name__ == "__main__":
    sys.exit(run())
