"""``POST /v1/stylize``: an image as the body (at most :data:`~stream.serve.MAX_BODY_BYTES`), the
stylised image back. Query ``style``, ``max_side`` (1..1024), ``format``. A 503 when the queue is full is
decided before a byte of the body is read; the request takes its queue place only once its body is in."""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..serve import MAX_BODY_BYTES, RequestError, max_side_param
from .body import declared_length, read_body
from .deps import State

router = APIRouter()


@router.post("/v1/stylize", responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}})
async def stylize(request: Request, state: State, style: str | None = None, max_side: str | None = None,
                  format: str = "png") -> Response:  # noqa: A002 (the query parameter's name)
    service = state.service
    style = style or service.default_style
    side = max_side_param(max_side)
    declared_length(request, MAX_BODY_BYTES)
    if not service.has_room():  # before a byte of the body is read
        raise RequestError(503, "busy: every queue slot is taken, try again shortly")
    body = await read_body(request, MAX_BODY_BYTES)
    with service.slot():  # only now, with the body in
        rgb = await asyncio.to_thread(service.decode, body, style, format.lower())
        del body
        out, ms = await state.on_model_thread(service.infer, style, side, rgb)
        del rgb
        image, content_type = await asyncio.to_thread(service.encode, out, format.lower())
    return Response(image, media_type=content_type,
                    headers={"X-Animestream-Style": style, "X-Animestream-Ms": f"{ms:.1f}"})
