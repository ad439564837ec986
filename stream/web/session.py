"""One browser's live stream, as the WebSocket and the MJPEG viewers of that stream share it."""
from __future__ import annotations

import asyncio
import uuid


class LiveSession:
    """One browser's live stream: the newest frame waiting (JPEG bytes, ``time.perf_counter()`` seconds
    when it came), counters, and the newest result (JPEG) with its sequence number for MJPEG viewers."""

    def __init__(self, style: str, max_side: int):
        self.id = uuid.uuid4().hex[:12]
        self.style, self.max_side = style, max_side
        self.pending: tuple[bytes, float] | None = None
        self.arrived = asyncio.Event()
        self.dropped = self.frames = 0
        self.latest: bytes | None = None
        self.seq = 0
        self.changed = asyncio.Condition()
        self.closed = False
