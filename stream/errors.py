"""Errors raised by animestream.

Every class derives from :class:`AnimestreamError` and from the built-in exception that fits, so
callers can catch either (``except OSError`` catches a bad source as well as a full disk).
The CLI prints ``str(error)`` as one line and exits non-zero.
"""
from __future__ import annotations


EXIT_ERROR = 1  # the exit code of a command that failed with an AnimestreamError (one line on stderr)


class AnimestreamError(Exception):
    """Base class of every error animestream raises on purpose."""


class SourceError(AnimestreamError, OSError):
    """The input cannot be opened or decoded (missing, empty, not a video or image, no video stream)."""


class SinkError(AnimestreamError, OSError):
    """The output cannot be written (missing directory, same path as the input, encoder failure)."""


class WeightsError(AnimestreamError, ValueError):
    """A weights file is missing, corrupt, of the wrong architecture or fails its checksum."""


class StyleNotFoundError(AnimestreamError, LookupError):
    """No style of that name is registered."""


class DownloadError(AnimestreamError, OSError):
    """Official weights could not be fetched or failed verification."""


class OutOfMemoryError(AnimestreamError, MemoryError):
    """The model would not fit in memory at this resolution (or did not): a smaller cap would."""


class StyleWarning(UserWarning):
    """A style was left out (an unreadable sidecar or styles folder); the others are still usable."""
