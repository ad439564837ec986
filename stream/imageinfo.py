"""An image's pixel size from its header, before anything decodes it.

A 200 KB PNG can declare 40000 x 40000 pixels: decoding it takes gigabytes (a decompression bomb).
:func:`header_size` reads the few bytes that state the size for PNG, JPEG, GIF, BMP, WebP and TIFF, so
callers can refuse such a file first. It returns None for formats it does not know or headers it
cannot parse; the decoder then has the last word (OpenCV also refuses more than 2^30 pixels).
"""
from __future__ import annotations

import struct
from pathlib import Path

DEFAULT_MAX_PIXELS = 100_000_000  # width x height above which an image is refused unless allowed
HEADER_BYTES = 1 << 16  # enough for every format's size fields (a JPEG's SOF may follow big EXIF blocks)
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def header_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) in pixels as the file's header states them, or None when unknown."""
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
        if head[:2] == b"\xff\xd8":
            return _jpeg(f, head)
    return size_from_bytes(head)


def size_from_bytes(head: bytes) -> tuple[int, int] | None:
    """As :func:`header_size`, for the first bytes of an encoded image (JPEGs within them only)."""
    try:
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])
        if head[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", head[6:10])
        if head[:2] == b"BM":
            w, h = struct.unpack("<ii", head[18:26])
            return abs(w), abs(h)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return _webp(head)
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(head)
        if head[:2] == b"\xff\xd8":
            return _jpeg_segments(head)
    except struct.error:
        return None
    return None


def _webp(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _tiff(head: bytes) -> tuple[int, int] | None:
    endian = "<" if head[:2] == b"II" else ">"
    (offset,) = struct.unpack(endian + "I", head[4:8])
    (count,) = struct.unpack(endian + "H", head[offset:offset + 2])
    found: dict[int, int] = {}
    for i in range(count):
        entry = head[offset + 2 + 12 * i: offset + 14 + 12 * i]
        tag, kind = struct.unpack(endian + "HH", entry[:4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            fmt = "H" if kind == 3 else "I"
            found[tag] = struct.unpack(endian + fmt, entry[8:8 + struct.calcsize(fmt)])[0]
    return (found[256], found[257]) if len(found) == 2 else None


def _jpeg_segments(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in _JPEG_SOF:
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        i += 2 + length
    return None


def _jpeg(f, head: bytes) -> tuple[int, int] | None:
    size = _jpeg_segments(head)
    if size is None and len(head) == HEADER_BYTES:  # the frame header lies past big metadata blocks
        size = _jpeg_segments(head + f.read(16 * HEADER_BYTES))
    return size
