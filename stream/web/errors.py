"""Every error the web service gives is JSON, ``{"error": "one line"}``; a 503 carries ``Retry-After``."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..jobs import JobError
from ..serve import RETRY_AFTER_S, RequestError


def error_response(status: int, message: str) -> JSONResponse:
    """``{"error": message}`` with HTTP ``status``; a 503 says to retry after :data:`RETRY_AFTER_S` seconds."""
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else {}
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        return error_response(404, f"no such path: {request.url.path}")
    if exc.status_code == 405:
        return error_response(405, f"{request.method} is not allowed on {request.url.path}")
    return error_response(exc.status_code, str(exc.detail))


async def _status_error(_request: Request, exc: RequestError | JobError) -> JSONResponse:
    return error_response(exc.status, str(exc))


def install_error_handlers(app: FastAPI) -> None:
    """Answer Starlette's HTTP errors (unknown path, wrong method), :class:`RequestError` and
    :class:`JobError` as one-line JSON."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestError, _status_error)
    app.add_exception_handler(JobError, _status_error)
