"""Plain-ASGI middleware of the web service: the drain before an early answer (a 413 or 503 given before
the body is in) and the access log."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from starlette.requests import ClientDisconnect

from .body import BODY_TIMEOUT_S

DRAIN_MAX_BYTES = 128 << 20  # an answer given before its body is in first reads and drops up to this much of the rest
DRAIN_MAX_S = 30.0  # ... for at most this long (nginx's lingering close), so the client reads the answer, not a reset


class DrainBeforeAnswering:
    """ASGI middleware: an answer given before the request body is all in (a 413, a 503 decided before reading,
    a 400 for the query) first reads and drops the rest of the body, up to :data:`DRAIN_MAX_BYTES` and
    :data:`DRAIN_MAX_S` (a stall of :data:`BODY_TIMEOUT_S` ends it too), as nginx does. A client that sends its
    whole body before it reads (Python's urllib, most libraries) otherwise gets a connection reset: the server
    closes with unread bytes in its socket. A client waiting on ``Expect: 100-continue`` that was never asked
    for its body is answered at once (it sends nothing more)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        bodiless = headers.get(b"content-length", b"0") == b"0" and b"transfer-encoding" not in headers
        state = {"asked": False, "done": bodiless}

        async def receiving():
            state["asked"] = True
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                state["done"] = True
            return message

        async def sending(message) -> None:
            if message["type"] == "http.response.start" and not state["done"] and (
                    state["asked"] or headers.get(b"expect", b"").lower() != b"100-continue"):
                state["done"] = True
                await drain(receive)
            await send(message)

        await self.app(scope, receiving, sending)


async def drain(receive) -> int:
    """Read and drop what is left of a request body, within :data:`DRAIN_MAX_BYTES` and :data:`DRAIN_MAX_S`;
    the number of bytes dropped."""
    loop = asyncio.get_running_loop()
    deadline, dropped = loop.time() + DRAIN_MAX_S, 0
    while dropped <= DRAIN_MAX_BYTES:
        left = deadline - loop.time()
        if left <= 0:
            break
        try:
            message = await asyncio.wait_for(receive(), min(left, BODY_TIMEOUT_S))
        except asyncio.TimeoutError:
            break
        if message["type"] != "http.request":
            break
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return dropped


class AccessLog:
    """ASGI middleware: one ``log`` line per HTTP request (client, method, path, status, milliseconds),
    and a client that goes away mid-request is that one line, not a traceback. Plain ASGI, so a body
    passes through untouched (Starlette's ``@app.middleware`` copies it through a second task)."""

    def __init__(self, app, log: Callable[[str], None] | None):
        self.app, self.log = app, log

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 0
        client = scope["client"][0] if scope.get("client") else "-"

        async def sending(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except ClientDisconnect:
            if self.log is not None:
                self.log(f"{client} {scope['method']} {scope['path']}: the client went away")
            return
        if self.log is not None:
            self.log(f'{client} "{scope["method"]} {scope["path"]}" {status} '
                     f"{(time.perf_counter() - start) * 1000:.0f} ms")
