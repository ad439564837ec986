"""``GET /`` (the page: images, video jobs, the webcam live; no build step, no CDN) and ``GET /healthz``."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

PAGE = Path(__file__).resolve().parent.parent / "webui" / "index.html"

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE.read_text())


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}
