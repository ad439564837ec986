"""Keep OpenCV windows working when PyAV is loaded first, without loading OpenCV; tell whether a window
can open at all.

The PyAV and OpenCV wheels both bundle ``libxcb-shape``, ``libxcb-shm`` and ``libxcb-xfixes`` under
the same file names, but PyAV's copies are linked to PyAV's private ``libxcb`` and OpenCV's to the
system one. The dynamic loader reuses a library by name, so whichever package loads first decides:
after ``import av``, OpenCV's Qt window code talks X11 through two ``libxcb`` instances and
``cv2.imshow`` hangs forever (PyAV issues #978 and #1050). Importing ``cv2`` first avoids that but
costs 25 MB of RSS in every file job, which never opens a window; loading just OpenCV's three small
libraries first (0.4 MB) fixes the order for any later ``import cv2``.

OpenCV's Linux wheels draw windows through Qt's X11 plugin, which aborts the whole process (SIGABRT,
no Python exception) when no X server answers; :func:`display_error` asks the X server first.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from pathlib import Path

CONFLICTING = ("libxcb-shape", "libxcb-shm", "libxcb-xfixes")


def prefer_opencv_xcb() -> list[Path]:
    """Load OpenCV's bundled copies of :data:`CONFLICTING` if OpenCV is installed and not yet loaded.

    Returns the libraries loaded (none when OpenCV is absent, already imported, or built without them).
    """
    if "cv2" in sys.modules or "av" in sys.modules:
        return []  # the order is already decided
    spec = importlib.util.find_spec("cv2")
    if spec is None or spec.origin is None:
        return []
    site = Path(spec.origin).parent.parent
    loaded = []
    for libs in sorted(site.glob("opencv*.libs")):
        for name in CONFLICTING:
            for path in sorted(libs.glob(f"{name}-*.so*")):
                try:
                    ctypes.CDLL(str(path))
                except OSError:
                    continue  # no system libxcb: OpenCV cannot open windows here anyway
                loaded.append(path)
    return loaded


def display_error(environ: dict[str, str] | None = None) -> str | None:
    """Why a window cannot open here, as a phrase ("no X display: DISPLAY is not set"), or None when an
    X server answers at ``DISPLAY`` (or this is not Linux, or Wayland is set, or libxcb is missing: then
    the window toolkit decides). Connects and disconnects once, in well under a second."""
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return None
    name = env.get("DISPLAY", "")
    if not name:
        return None if env.get("WAYLAND_DISPLAY") else "no X display: DISPLAY is not set"
    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError:
        return None
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    connection = xcb.xcb_connect(name.encode(), None)  # never NULL: a failed one carries its error
    try:
        failed = xcb.xcb_connection_has_error(connection)
    finally:
        xcb.xcb_disconnect(connection)
    return f"no X server answers at DISPLAY={name}" if failed else None
