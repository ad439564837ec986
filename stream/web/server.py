"""uvicorn serving the web app on a socket bound here, in this thread or on a helper thread."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from fastapi import FastAPI


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
    """uvicorn serving ``app`` (made by :func:`~stream.web.create_app`; its model thread is shut down with it)
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
            self._app.state.web.model_thread.shutdown(wait=True)

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
        self._app.state.web.model_thread.shutdown(wait=True)
