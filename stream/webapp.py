"""The web service and its page: FastAPI on uvicorn (the optional extra ``animestream[web]``).

    animestream serve --port 8000            # then open http://127.0.0.1:8000/ ; OpenAPI at /docs

Endpoints (every answer is JSON unless it is a picture, a video or the page; errors are
``{"error": "one line"}``):

* ``GET /``: the page (images, video jobs, the webcam live), no build step and no CDN;
* ``POST /v1/stylize``: an image as the body; query ``style``, ``max_side`` (1..1024), ``format``;
* ``GET /v1/styles`` and ``GET /v1/styles/{name}/thumbnail``: the styles, and a small stylised sample;
* ``POST /v1/jobs`` (a video as the body; ``style``, ``max_side``, ``format``) -> 202 and the job;
  ``GET /v1/jobs/{id}`` (state, frames, fps, ETA), ``GET /v1/jobs/{id}/result``, ``DELETE /v1/jobs/{id}``;
* ``WS /v1/live``: JPEG frames in, the newest stylised and sent back (the rest dropped and counted),
  with a JSON stats message after each; a ``{"style": NAME}`` text message switches the style;
  ``GET /v1/live/{session}/mjpeg`` serves that session's results as MJPEG (OBS, any browser);
* ``GET /healthz``.

Guarantees kept from the first service: one model call at a time; at most ``queue`` requests wait
for it and any more get 503 with ``Retry-After`` at once, decided before the body is read; a request
takes its place in that queue only once its body is in (read with a timeout, so slow uploads hold
nothing); an image's size is read from its header and refused before it is decoded; a request may
name a registered style, never a file. Engines are built once per (style, cap), at most two kept.
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from . import __version__, weights
from .jobs import JobError, JobQueue
from .mjpeg import BOUNDARY, encode_jpeg, part
from .serve import MAX_BODY_BYTES, RETRY_AFTER_S, RequestError, StyleService, max_side_param

PAGE = Path(__file__).resolve().parent / "webui" / "index.html"
THUMBNAIL = Path(__file__).resolve().parent / "webui" / "thumbnail.jpg"
THUMBNAIL_SIDE = 160  # pixels, the cap thumbnails are stylised at
BODY_TIMEOUT_S = 10.0  # a request body that sends nothing for this long is given up (408)
MAX_UPLOAD_BYTES = 1 << 30  # largest video a job takes
UPLOAD_CHUNK = 1 << 20
LIVE_MAX_SIDE = 256  # pixels: the live path's default cap (the page can ask for another)
LIVE_MAX_FRAME_BYTES = 8 << 20  # a live frame over this is skipped with an error message (uvicorn closes at 16 MiB)
DRAIN_MAX_BYTES = 128 << 20  # an answer given before its body is in first reads and drops up to this much of the rest
DRAIN_MAX_S = 30.0  # ... for at most this long (nginx's lingering close), so the client reads the answer, not a reset


def _error(status: int, message: str) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else {}
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _chunks(request: Request) -> AsyncIterator[bytes]:
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


def _declared_length(request: Request, limit: int) -> int | None:
    """The Content-Length, checked against ``limit``; None for a chunked body. Before any byte is read."""
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


async def _read_body(request: Request, limit: int) -> bytes:
    data, size = [], 0
    async for chunk in _chunks(request):
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body is over {limit // 2**20} MiB")
        data.append(chunk)
    return b"".join(data)


class LiveSession:
    """One browser's live stream: the newest frame waiting, counters, and its MJPEG viewers."""

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


class _DrainBeforeAnswering:
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
                await _drain(receive)
            await send(message)

        await self.app(scope, receiving, sending)


async def _drain(receive) -> int:
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


class _AccessLog:
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


def create_app(service: StyleService, jobs: JobQueue | None = None, *,
               log: Callable[[str], None] | None = None) -> FastAPI:
    """The FastAPI app for ``service`` (images and live) and ``jobs`` (videos; None: no video jobs)."""
    app = FastAPI(title="animestream", version=__version__,
                  description="Anime-style images, videos and live video. Errors are JSON: {\"error\": \"...\"}.")
    sessions: dict[str, LiveSession] = {}
    thumbnails: dict[str, bytes] = {}
    thumb_lock = threading.Lock()
    # Every model call runs on this one thread, so torch's thread pool stays warm and bound to it, where
    # asyncio's default executor would hand calls to whichever of its threads is free; decoding and
    # encoding run there instead, overlapping the next model call. WebServer shuts it down at the end.
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="animestream-model")
    app.state.model_thread = model_thread

    async def on_model_thread(fn: Callable, *args):
        return await asyncio.get_running_loop().run_in_executor(model_thread, fn, *args)

    app.add_middleware(_AccessLog, log=log)
    app.add_middleware(_DrainBeforeAnswering)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _error(404, f"no such path: {_request.url.path}")
        if exc.status_code == 405:
            return _error(405, f"{_request.method} is not allowed on {_request.url.path}")
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestError)
    async def request_error(_request: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(JobError)
    async def job_error(_request: Request, exc: JobError) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text())

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/v1/styles")
    async def styles() -> dict:
        listed = _styles_json()
        if service.default_style not in {s["name"] for s in listed}:  # the server's default may be a file
            listed.insert(0, {"name": service.default_style, "origin": "this server's default",
                              "thumbnail": f"/v1/styles/{service.default_style}/thumbnail"})
        return {"default": service.default_style, "live_default": service.live_style, "styles": listed}

    @app.get("/v1/styles/{name}/thumbnail", responses={200: {"content": {"image/jpeg": {}}}})
    async def thumbnail(name: str) -> Response:
        if name != service.default_style and name not in {s.name for s in weights.list_styles()}:
            raise RequestError(404, f"unknown style {name!r}")

        def render() -> bytes:
            with thumb_lock:
                if name not in thumbnails:
                    import cv2

                    rgb = cv2.cvtColor(cv2.imread(str(THUMBNAIL)), cv2.COLOR_BGR2RGB)
                    thumbnails[name] = encode_jpeg(service.run(name, THUMBNAIL_SIDE, rgb))
                return thumbnails[name]

        data = await on_model_thread(render)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.post("/v1/stylize", responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}})
    async def stylize(request: Request, style: str | None = None, max_side: str | None = None,
                      format: str = "png") -> Response:  # noqa: A002 (the query parameter's name)
        style = style or service.default_style
        side = max_side_param(max_side)
        _declared_length(request, MAX_BODY_BYTES)
        if not service.has_room():  # before a byte of the body is read
            raise RequestError(503, "busy: every queue slot is taken, try again shortly")
        body = await _read_body(request, MAX_BODY_BYTES)
        with service.slot():  # only now, with the body in
            rgb = await asyncio.to_thread(service.decode, body, style, format.lower())
            del body
            out, ms = await on_model_thread(service.infer, style, side, rgb)
            del rgb
            image, content_type = await asyncio.to_thread(service.encode, out, format.lower())
        return Response(image, media_type=content_type,
                        headers={"X-Animestream-Style": style, "X-Animestream-Ms": f"{ms:.1f}"})

    if jobs is not None:
        @app.post("/v1/jobs", status_code=202)
        async def create_job(request: Request, style: str | None = None, max_side: str | None = None,
                             format: str = "mp4", name: str = "upload.mp4") -> dict:  # noqa: A002
            style = style or service.default_style
            side = max_side_param(max_side)
            if style != service.default_style and style not in {s.name for s in weights.list_styles()}:
                raise RequestError(400, f"unknown style {style!r}; GET /v1/styles lists them")
            out_suffix = f".{format.lower().lstrip('.')}"
            if out_suffix not in (".mp4", ".webm", ".mkv", ".mov", ".gif"):
                raise RequestError(400, f"format must be one of mp4, webm, mkv, mov, gif, not {format!r}")
            length = _declared_length(request, MAX_UPLOAD_BYTES)
            jobs.check_room(length)
            job_id, upload = jobs.new_folder(Path(name).suffix or ".mp4")
            size = 0
            try:
                with open(upload, "wb") as f:
                    async for chunk in _chunks(request):
                        size += len(chunk)
                        if size > MAX_UPLOAD_BYTES:
                            raise RequestError(413, f"the video is over {MAX_UPLOAD_BYTES // 2**20} MiB")
                        f.write(chunk)
            except BaseException:
                import shutil

                shutil.rmtree(upload.parent, ignore_errors=True)
                raise
            return jobs.submit(job_id, upload, style=style, max_side=side, out_suffix=out_suffix).as_dict()

        @app.get("/v1/jobs/{job_id}")
        async def job_status(job_id: str) -> dict:
            return jobs.get(job_id).as_dict()

        @app.get("/v1/jobs/{job_id}/result", responses={200: {"content": {"video/mp4": {}}}})
        async def job_result(job_id: str) -> FileResponse:
            job = jobs.get(job_id)
            if job.state != "done" or not job.result.exists():
                raise RequestError(409, f"job {job_id} is {job.state}: no result" +
                                   (f" ({job.error})" if job.error else ""))
            media = {".mp4": "video/mp4", ".webm": "video/webm", ".gif": "image/gif"}.get(job.result.suffix,
                                                                                         "application/octet-stream")
            return FileResponse(job.result, media_type=media, filename=f"anime-{job_id[:8]}{job.result.suffix}")

        @app.delete("/v1/jobs/{job_id}")
        async def cancel_job(job_id: str) -> dict:
            return {**jobs.cancel(job_id).as_dict(), "state": "cancelled"}

    @app.websocket("/v1/live")
    async def live(ws: WebSocket, style: str | None = None, max_side: int = LIVE_MAX_SIDE) -> None:
        await ws.accept()
        known = {s.name for s in weights.list_styles()} | {service.default_style}
        session = LiveSession(style if style in known else service.live_style,
                              max(16, min(max_side, 1024)))
        sessions[session.id] = session
        await ws.send_text(json.dumps({"type": "hello", "session": session.id, "style": session.style,
                                       "mjpeg": f"/v1/live/{session.id}/mjpeg"}))
        worker = asyncio.create_task(_live_worker(ws, session))
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes") is not None:
                    if len(message["bytes"]) > LIVE_MAX_FRAME_BYTES:
                        await ws.send_text(json.dumps({"type": "error", "error": "a frame over "
                                                       f"{LIVE_MAX_FRAME_BYTES // 2**20} MiB was skipped"}))
                        continue
                    if session.pending is not None:
                        session.dropped += 1  # the newest frame wins
                    session.pending = (message["bytes"], time.perf_counter())
                    session.arrived.set()
                elif message.get("text"):
                    try:
                        wanted = json.loads(message["text"]).get("style")
                    except (ValueError, AttributeError):
                        wanted = None
                    if wanted in known:
                        session.style = wanted
                        await ws.send_text(json.dumps({"type": "style", "style": wanted}))
                    else:
                        await ws.send_text(json.dumps({"type": "error", "error": f"unknown style {wanted!r}"}))
        except WebSocketDisconnect:
            pass
        finally:
            session.closed = True
            session.arrived.set()
            async with session.changed:
                session.changed.notify_all()
            worker.cancel()
            sessions.pop(session.id, None)

    async def _live_worker(ws: WebSocket, session: LiveSession) -> None:
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
            jpeg = await on_model_thread(lambda: encode_jpeg(service.run(session.style, session.max_side, rgb)))
            session.frames += 1
            async with session.changed:
                session.latest, session.seq = jpeg, session.seq + 1
                session.changed.notify_all()
            latency = (time.perf_counter() - received) * 1000
            await ws.send_bytes(jpeg)
            await ws.send_text(json.dumps({"type": "stats", "latency_ms": round(latency, 1), "frames": session.frames,
                                           "dropped": session.dropped, "style": session.style,
                                           "fps": round(session.frames / (time.perf_counter() - started), 2)}))

    @app.get("/v1/live/{session_id}/mjpeg", responses={200: {"content": {"multipart/x-mixed-replace": {}}}})
    async def live_mjpeg(session_id: str) -> StreamingResponse:
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

    return app


def _styles_json() -> list[dict]:
    return [{"name": s.name, "origin": s.origin, "license": s.meta.get("license"), "lite": s.lite,
             "recommended_max_side": s.recommended_max_side, "quality": s.meta.get("quality"),
             "thumbnail": f"/v1/styles/{s.name}/thumbnail"} for s in weights.list_styles()]


def _server_class():
    import contextlib
    import signal

    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, minus re-raising the stop signal after a graceful shutdown (that killed the
        process with it, where the CLI exits 0), and saying once that it is stopping."""

        on_stop: Callable[[], None] | None = None

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            signals = [s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None]
            original = {s: signal.signal(s, self.handle_exit) for s in signals}
            try:
                yield
            finally:
                for s, handler in original.items():
                    signal.signal(s, handler)

        def handle_exit(self, sig, frame) -> None:
            if not self.should_exit and self.on_stop is not None:
                self.on_stop()
            super().handle_exit(sig, frame)

    return Server


class WebServer:
    """uvicorn serving ``app`` (made by :func:`create_app`; its model thread is shut down with the server)
    on a socket bound here (so a taken port is our one-line error), in this thread (:meth:`serve`:
    Ctrl-C or SIGTERM stops it, the requests in flight get ``shutdown_timeout_s``, a second Ctrl-C
    stops at once) or on a helper thread (:meth:`start`, :meth:`stop`)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 8000, *, shutdown_timeout_s: float = 5.0,
                 on_stop: Callable[[], None] | None = None):
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((host, port))
            self.socket.listen(2048)
        except OSError:
            self.socket.close()
            raise
        self.host, self.port = host, self.socket.getsockname()[1]
        self._app = app
        config = uvicorn.Config(app, log_config=None, access_log=False, log_level="warning", ws="websockets-sansio",
                                timeout_graceful_shutdown=shutdown_timeout_s, timeout_keep_alive=5, lifespan="off")
        self.server = _server_class()(config)
        self.server.on_stop = on_stop
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve(self) -> None:
        """Serve until Ctrl-C or SIGTERM (uvicorn's handlers: the requests in flight get a few seconds)."""
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.socket.close()
            self._app.state.model_thread.shutdown(wait=True)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                        name="animestream-web")
        self._thread.start()
        while not self.server.started and self._thread.is_alive():
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)
        self.socket.close()
        self._app.state.model_thread.shutdown(wait=True)
