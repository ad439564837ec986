"""The live path: ``WS /v1/live`` takes JPEG frames, stylises the newest (the rest are dropped and
counted) and sends it back with a JSON stats message; a ``{"style": NAME}`` text message switches the
style. ``GET /v1/live/{session}/mjpeg`` serves that session's results as MJPEG (OBS, any browser)."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from .. import weights
from ..mjpeg import BOUNDARY, encode_jpeg, part
from ..serve import RequestError
from .deps import Sessions, State, WebState
from .session import LiveSession

LIVE_MAX_SIDE = 256  # pixels: the live path's default cap (the page can ask for another)
LIVE_MAX_FRAME_BYTES = 8 << 20  # a live frame over this is skipped with an error message (uvicorn closes at 16 MiB)

router = APIRouter()


@router.websocket("/v1/live")
async def live(ws: WebSocket, state: State, style: str | None = None, max_side: int = LIVE_MAX_SIDE) -> None:
    await ws.accept()
    known = {s.name for s in weights.list_styles()} | {state.service.default_style}
    session = LiveSession(style if style in known else state.service.live_style, max(16, min(max_side, 1024)))
    state.sessions[session.id] = session
    await ws.send_text(json.dumps({"type": "hello", "session": session.id, "style": session.style,
                                   "mjpeg": f"/v1/live/{session.id}/mjpeg"}))
    worker = asyncio.create_task(_live_worker(ws, session, state))
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("bytes") is not None:
                await _take_frame(ws, session, message["bytes"])
            elif message.get("text"):
                await _switch_style(ws, session, message["text"], known)
    except WebSocketDisconnect:
        pass
    finally:
        session.closed = True
        session.arrived.set()
        async with session.changed:
            session.changed.notify_all()
        worker.cancel()
        state.sessions.pop(session.id, None)


async def _take_frame(ws: WebSocket, session: LiveSession, data: bytes) -> None:
    """Make ``data`` the frame waiting (the newest frame wins), or skip it if over the size limit."""
    if len(data) > LIVE_MAX_FRAME_BYTES:
        await ws.send_text(json.dumps({"type": "error", "error": "a frame over "
                                       f"{LIVE_MAX_FRAME_BYTES // 2**20} MiB was skipped"}))
        return
    if session.pending is not None:
        session.dropped += 1
    session.pending = (data, time.perf_counter())
    session.arrived.set()


async def _switch_style(ws: WebSocket, session: LiveSession, text: str, known: set[str]) -> None:
    """Switch to the style a ``{"style": NAME}`` message names, or answer that it is unknown."""
    try:
        wanted = json.loads(text).get("style")
    except (ValueError, AttributeError):
        wanted = None
    if wanted in known:
        session.style = wanted
        await ws.send_text(json.dumps({"type": "style", "style": wanted}))
    else:
        await ws.send_text(json.dumps({"type": "error", "error": f"unknown style {wanted!r}"}))


async def _live_worker(ws: WebSocket, session: LiveSession, state: WebState) -> None:
    """Stylise the newest waiting frame on the model thread, publish it to the MJPEG viewers, send it
    and a stats message back; until the session closes (or this task is cancelled)."""
    import cv2

    started = time.perf_counter()
    while not session.closed:
        await session.arrived.wait()
        session.arrived.clear()
        if session.pending is None:
            continue
        data, received = session.pending
        session.pending = None
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            await ws.send_text(json.dumps({"type": "error", "error": "a frame that is not a JPEG"}))
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        jpeg = await state.on_model_thread(lambda: encode_jpeg(state.service.run(session.style, session.max_side,
                                                                                 rgb)))
        session.frames += 1
        async with session.changed:
            session.latest, session.seq = jpeg, session.seq + 1
            session.changed.notify_all()
        latency = (time.perf_counter() - received) * 1000
        await ws.send_bytes(jpeg)
        await ws.send_text(json.dumps({"type": "stats", "latency_ms": round(latency, 1), "frames": session.frames,
                                       "dropped": session.dropped, "style": session.style,
                                       "fps": round(session.frames / (time.perf_counter() - started), 2)}))


@router.get("/v1/live/{session_id}/mjpeg", responses={200: {"content": {"multipart/x-mixed-replace": {}}}})
async def live_mjpeg(session_id: str, sessions: Sessions) -> StreamingResponse:
    session = sessions.get(session_id)
    if session is None:
        raise RequestError(404, f"no live session {session_id!r}")

    async def frames() -> AsyncIterator[bytes]:
        seen = 0
        while not session.closed:
            async with session.changed:
                await session.changed.wait_for(lambda: session.seq > seen or session.closed)
            if session.latest is not None and session.seq > seen:
                seen = session.seq
                yield part(session.latest)

    return StreamingResponse(frames(), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}")
