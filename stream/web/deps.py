"""The state the routers share, one :class:`WebState` an app on ``app.state.web``, and the ``Depends``
getters that hand its parts to a route (``service: Service`` in a route's signature)."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

from fastapi import Depends
from starlette.requests import HTTPConnection

from ..jobs import JobQueue
from ..serve import StyleService
from .session import LiveSession


class WebState:
    """What one app's routes share: the :class:`StyleService`, the :class:`JobQueue` (None: no video jobs),
    the live sessions by id, the thumbnails made so far (JPEG bytes by style) and the model thread.

    Every model call runs on that one thread, so torch's thread pool stays warm and bound to it, where
    asyncio's default executor would hand calls to whichever of its threads is free; decoding and
    encoding run elsewhere, overlapping the next model call. :class:`~stream.web.server.WebServer`
    shuts it down at the end."""

    def __init__(self, service: StyleService, jobs: JobQueue | None):
        self.service, self.jobs = service, jobs
        self.sessions: dict[str, LiveSession] = {}
        self.thumbnails: dict[str, bytes] = {}
        self.thumb_lock = threading.Lock()
        self.model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="animestream-model")

    async def on_model_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` run on the model thread, awaited."""
        return await asyncio.get_running_loop().run_in_executor(self.model_thread, fn, *args)


def get_state(conn: HTTPConnection) -> WebState:
    """The app's :class:`WebState` (an HTTP request's or a WebSocket's)."""
    return conn.app.state.web


State = Annotated[WebState, Depends(get_state)]


def get_service(state: State) -> StyleService:
    """The app's :class:`StyleService`."""
    return state.service


def get_jobs(state: State) -> JobQueue:
    """The app's :class:`JobQueue`; the job routes are only there when it has one."""
    assert state.jobs is not None, "the job routes are included only with a JobQueue"
    return state.jobs


def get_sessions(state: State) -> dict[str, LiveSession]:
    """The app's live sessions by id, open ones only."""
    return state.sessions


Service = Annotated[StyleService, Depends(get_service)]
Jobs = Annotated[JobQueue, Depends(get_jobs)]
Sessions = Annotated[dict[str, LiveSession], Depends(get_sessions)]
