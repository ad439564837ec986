"""Ask an X11 window to close as its close button does: a WM_DELETE_WINDOW message (libX11 through ctypes).

Xvfb runs no window manager, so no close button exists to click, and xdotool 3.2016 has no command for
this message (windowclose destroys the window, windowkill kills the client): neither is what a user does.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

CLIENT_MESSAGE = 33  # X11 event type

class XClientMessageEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", ctypes.c_void_p), ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
                ("format", ctypes.c_int), ("data", ctypes.c_long * 5)]

class XEvent(ctypes.Union):
    _fields_ = [("xclient", XClientMessageEvent), ("pad", ctypes.c_long * 24)]

def close(display: str, wid: int) -> None:
    """Send WM_PROTOCOLS / WM_DELETE_WINDOW to window ``wid`` on ``display`` (e.g. ":90")."""
    x = ctypes.CDLL(ctypes.util.find_library("X11"))
    x.XOpenDisplay.restype = ctypes.c_void_p
    x.XInternAtom.restype = ctypes.c_ulong
    x.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.POINTER(XEvent)]
    x.XFlush.argtypes = [ctypes.c_void_p]
    x.XCloseDisplay.argtypes = [ctypes.c_void_p]
    d = x.XOpenDisplay(display.encode())
    if not d:
        raise OSError(f"cannot open X display {display}")
    ev = XEvent()
    ev.xclient.type = CLIENT_MESSAGE
    ev.xclient.window = wid
    ev.xclient.message_type = x.XInternAtom(d, b"WM_PROTOCOLS", 0)
    ev.xclient.format = 32
    ev.xclient.data[0] = x.XInternAtom(d, b"WM_DELETE_WINDOW", 0)
    x.XSendEvent(d, wid, 0, 0, ctypes.byref(ev))
    x.XFlush(d)
    x.XCloseDisplay(d)

if __name__ == "__main__":
    close(sys.argv[1], int(sys.argv[2]))
