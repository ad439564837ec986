"""Video jobs: ``POST /v1/jobs`` (a video as the body, at most :data:`MAX_UPLOAD_BYTES`; ``style``,
``max_side``, ``format``, ``name``, ``deflicker``: steadier in motion, as the CLI's) -> 202 and the job; ``GET /v1/jobs/{id}`` (state, frames, fps, ETA),
``GET /v1/jobs/{id}/result``, ``DELETE /v1/jobs/{id}``. Included only for an app with a :class:`JobQueue`."""
from __future__ import annotations

import shutil
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from .. import weights
from ..serve import RequestError, max_side_param
from .body import chunks, declared_length
from .deps import Jobs, Service

MAX_UPLOAD_BYTES = 1 << 30  # largest video a job takes
OUT_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".gif")
MEDIA_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".gif": "image/gif"}  # others: octet-stream

router = APIRouter()


@router.post("/v1/jobs", status_code=202)
async def create_job(request: Request, service: Service, jobs: Jobs, style: str | None = None,
                     max_side: str | None = None, format: str = "mp4",  # noqa: A002 (the query parameter's name)
                     name: str = "upload.mp4", deflicker: bool = False) -> dict:
    style = style or service.default_style
    side = max_side_param(max_side)
    if style != service.default_style and style not in {s.name for s in weights.list_styles()}:
        raise RequestError(400, f"unknown style {style!r}; GET /v1/styles lists them")
    out_suffix = f".{format.lower().lstrip('.')}"
    if out_suffix not in OUT_SUFFIXES:
        raise RequestError(400, f"format must be one of mp4, webm, mkv, mov, gif, not {format!r}")
    length = declared_length(request, MAX_UPLOAD_BYTES)
    jobs.check_room(length)
    job_id, upload = jobs.new_folder(Path(name).suffix or ".mp4")
    size = 0
    try:
        with open(upload, "wb") as f:
            async for chunk in chunks(request):
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise RequestError(413, f"the video is over {MAX_UPLOAD_BYTES // 2**20} MiB")
                f.write(chunk)
    except BaseException:
        shutil.rmtree(upload.parent, ignore_errors=True)
        raise
    return jobs.submit(job_id, upload, style=style, max_side=side, out_suffix=out_suffix,
                       deflicker=deflicker).as_dict()


@router.get("/v1/jobs/{job_id}")
async def job_status(job_id: str, jobs: Jobs) -> dict:
    return jobs.get(job_id).as_dict()


@router.get("/v1/jobs/{job_id}/result", responses={200: {"content": {"video/mp4": {}}}})
async def job_result(job_id: str, jobs: Jobs) -> FileResponse:
    job = jobs.get(job_id)
    if job.state != "done" or not job.result.exists():
        raise RequestError(409, f"job {job_id} is {job.state}: no result" +
                           (f" ({job.error})" if job.error else ""))
    media = MEDIA_TYPES.get(job.result.suffix, "application/octet-stream")
    return FileResponse(job.result, media_type=media, filename=f"anime-{job_id[:8]}{job.result.suffix}")


@router.delete("/v1/jobs/{job_id}")
async def cancel_job(job_id: str, jobs: Jobs) -> dict:
    return {**jobs.cancel(job_id).as_dict(), "state": "cancelled"}
