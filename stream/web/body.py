"""Reading a request body: its declared length checked before a byte is read, then the bytes in chunks,
each awaited for at most :data:`BODY_TIMEOUT_S` (so a slow upload holds nothing for long)."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import Request

from ..serve import RequestError

BODY_TIMEOUT_S = 10.0  # a request body that sends nothing for this long is given up (408)


async def chunks(request: Request) -> AsyncIterator[bytes]:
    """The request body in chunks; :class:`RequestError` 408 if it stalls for :data:`BODY_TIMEOUT_S`."""
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), BODY_TIMEOUT_S)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise RequestError(408, f"the body stopped arriving for {BODY_TIMEOUT_S:g} s") from None
        yield chunk


def declared_length(request: Request, limit: int) -> int | None:
    """The Content-Length in bytes, checked against ``limit`` (bytes; :class:`RequestError` 413 over it,
    411 without one and not chunked, 400 if not a number); None for a chunked body. Reads no byte."""
    length = request.headers.get("content-length")
    if length is None:
        if "chunked" not in request.headers.get("transfer-encoding", "").lower():
            raise RequestError(411, "send the body with a Content-Length (or chunked)")
        return None
    if not length.isdigit():
        raise RequestError(400, f"Content-Length {length!r} is not a number of bytes")
    if int(length) > limit:
        raise RequestError(413, f"the body is over {limit // 2**20} MiB")
    return int(length)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (:class:`RequestError` 413 as soon as it goes over)."""
    data, size = [], 0
    async for chunk in chunks(request):
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body is over {limit // 2**20} MiB")
        data.append(chunk)
    return b"".join(data)
