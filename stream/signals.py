"""Stopping a job from outside: SIGTERM and SIGHUP are handled as Ctrl-C is.

A service manager stops a program with SIGTERM and a closed terminal sends SIGHUP; both used to kill
a conversion outright, leaving nothing but a hidden temporary file. Inside :func:`stop_on_signals`
they raise :class:`Stopped`, a ``KeyboardInterrupt``, in the main thread, so every job finishes the
file with the frames done so far exactly as it does on Ctrl-C. The exit code is then 128 + the
signal's number, as a shell reports for a process the signal ended (130, 143, 129).
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


class Stopped(KeyboardInterrupt):
    """A stop signal other than SIGINT; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code(interrupt: BaseException | None = None) -> int:
    """128 + the number of the signal that stopped the job (SIGINT when ``interrupt`` is a plain Ctrl-C)."""
    return 128 + (interrupt.signum if isinstance(interrupt, Stopped) else signal.SIGINT)


@contextmanager
def stop_on_signals() -> Iterator[list[int]]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Stopped` in the main thread. Yields a list
    that records each stop signal received, in order. Outside the main thread it changes nothing."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        raise Stopped(signum)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
