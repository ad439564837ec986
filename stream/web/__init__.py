"""The web service and its page: FastAPI on uvicorn (the optional extra ``animestream[web]``).

    animestream serve --port 8000            # then open http://127.0.0.1:8000/ ; OpenAPI at /docs

Endpoints (every answer is JSON unless it is a picture, a video or the page; errors are
``{"error": "one line"}``), a router a resource:

* ``GET /`` and ``GET /healthz`` (:mod:`.pages`): the page (images, video jobs, the webcam live), no build
  step and no CDN;
* ``POST /v1/stylize`` (:mod:`.stylize`): an image as the body; query ``style``, ``max_side`` (1..1024), ``format``;
* ``GET /v1/styles`` and ``GET /v1/styles/{name}/thumbnail`` (:mod:`.styles`): the styles, and a small
  stylised sample;
* ``POST /v1/jobs`` (a video as the body; ``style``, ``max_side``, ``format``, ``deflicker``) -> 202 and the job;
  ``GET /v1/jobs/{id}`` (state, frames, fps, ETA), ``GET /v1/jobs/{id}/result``, ``DELETE /v1/jobs/{id}``
  (:mod:`.jobs`);
* ``WS /v1/live``: JPEG frames in, the newest stylised and sent back (the rest dropped and counted),
  with a JSON stats message after each; a ``{"style": NAME}`` text message switches the style;
  ``GET /v1/live/{session}/mjpeg`` serves that session's results as MJPEG (OBS, any browser) (:mod:`.live`).

The routes share one :class:`~.deps.WebState` through ``Depends`` (:mod:`.deps`); the drain before an early
answer and the access log are :mod:`.middleware`; uvicorn is :mod:`.server`.

Guarantees kept from the first service: one model call at a time; at most ``queue`` requests wait
for it and any more get 503 with ``Retry-After`` at once, decided before the body is read; a request
takes its place in that queue only once its body is in (read with a timeout, so slow uploads hold
nothing); an image's size is read from its header and refused before it is decoded; a request may
name a registered style, never a file. Engines are built once per (style, cap), at most two kept.
"""
from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from .. import __version__
from ..jobs import JobQueue
from ..serve import StyleService
from . import jobs as job_routes
from . import live, pages, styles, stylize
from .deps import WebState
from .errors import install_error_handlers
from .middleware import AccessLog, DrainBeforeAnswering
from .server import WebServer
from .session import LiveSession

__all__ = ["LiveSession", "WebServer", "WebState", "create_app"]


def create_app(service: StyleService, jobs: JobQueue | None = None, *,
               log: Callable[[str], None] | None = None) -> FastAPI:
    """The FastAPI app for ``service`` (images and live) and ``jobs`` (videos; None: no video jobs), with
    ``log`` given one line per HTTP request (None: no access log). Its :class:`WebState` is ``app.state.web``;
    :class:`WebServer` shuts its model thread down."""
    app = FastAPI(title="animestream", version=__version__,
                  description="Anime-style images, videos and live video. Errors are JSON: {\"error\": \"...\"}.")
    app.state.web = WebState(service, jobs)
    app.add_middleware(AccessLog, log=log)
    app.add_middleware(DrainBeforeAnswering)
    install_error_handlers(app)
    app.include_router(pages.router)
    app.include_router(styles.router)
    app.include_router(stylize.router)
    if jobs is not None:
        app.include_router(job_routes.router)
    app.include_router(live.router)
    return app
