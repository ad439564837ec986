"""The HTTP service, through a real server on 127.0.0.1: results, errors, the bounded wait, shutdown."""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest

from stream.engine import Engine
from stream.serve import StyleService
from stream.web import middleware, stylize
from stream.webapp import WebServer, create_app

ROOT = Path(__file__).resolve().parent.parent
PHOTO = (ROOT / "samples" / "astronaut.jpg").read_bytes()


@contextmanager
def running(service: StyleService, jobs=None, **server_options):
    """The web app for ``service`` on a free port, served on a thread; stopped and joined on the way out."""
    server = WebServer(create_app(service, jobs), "127.0.0.1", 0, **server_options)
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.headers, r.read()  # headers: case-insensitive
    finally:
        conn.close()


@pytest.fixture
def tiny_service(tiny_style):
    built = []

    def factory(style: str, max_side: int | None) -> Engine:
        built.append((style, max_side))
        return Engine(tiny_style, max_side=64 if max_side is None else max_side, precision="fp32", device="cpu")

    service = StyleService(factory, default_style=tiny_style.stem, queue=2)
    service.built = built
    return service


def test_a_posted_image_comes_back_stylised_exactly_as_the_engine_makes_it(tiny_service, tiny_style):
    with running(tiny_service) as port:
        status, headers, body = request(port, "POST", "/v1/stylize", PHOTO)
        status2, headers2, body2 = request(port, "POST", "/v1/stylize?format=jpeg&max_side=32", PHOTO)
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert headers["X-Animestream-Style"] == "tiny" and float(headers["X-Animestream-Ms"]) > 0
    got = cv2.cvtColor(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    photo = cv2.cvtColor(cv2.imdecode(np.frombuffer(PHOTO, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    want = Engine(tiny_style, max_side=64, precision="fp32", device="cpu")(photo)
    assert got.shape == photo.shape and np.array_equal(got, want)  # PNG is lossless
    assert np.abs(got.astype(int) - photo).mean() > 10  # and it is not the photo
    assert status2 == 200 and headers2["Content-Type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(body2, np.uint8), cv2.IMREAD_COLOR).shape == photo.shape
    assert tiny_service.built == [("tiny", None), ("tiny", 32)]  # one engine per (style, cap), kept


def test_every_model_call_runs_on_one_thread_and_each_request_is_one_log_line(tiny_service):
    threads: list[str] = []
    factory = tiny_service.engine_factory

    def spying(style, max_side):
        engine = factory(style, max_side)
        return lambda rgb: (threads.append(threading.current_thread().name), engine(rgb))[1]

    tiny_service.engine_factory, lines = spying, []
    server = WebServer(create_app(tiny_service, log=lines.append), "127.0.0.1", 0)
    server.start()
    try:
        for _ in range(3):
            assert request(server.port, "POST", "/v1/stylize?format=jpeg", PHOTO)[0] == 200
        assert request(server.port, "GET", "/nowhere")[0] == 404
        with socket.create_connection(("127.0.0.1", server.port)) as s:  # promises 100 KB, sends 10 B, leaves
            s.sendall(b"POST /v1/stylize HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789")
        deadline = time.monotonic() + 5
        while len(lines) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        server.stop()
    assert len(threads) == 3 and len(set(threads)) == 1 and threads[0].startswith("animestream-model")
    parsed = [re.fullmatch(r'127\.0\.0\.1 "(\w+) (\S+)" (\d{3}) \d+ ms', line) for line in lines[:4]]
    assert [m.groups() for m in parsed] == [("POST", "/v1/stylize", "200")] * 3 + [("GET", "/nowhere", "404")]
    assert lines[4] == "127.0.0.1 POST /v1/stylize: the client went away" and len(lines) == 5
    assert not [t for t in threading.enumerate() if t.name.startswith("animestream-model")]  # shut down


def test_styles_and_health(tiny_service):
    with running(tiny_service) as port:
        status, headers, body = request(port, "GET", "/v1/styles")
        health = request(port, "GET", "/healthz")
    listing = json.loads(body)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert listing["default"] == "tiny"
    assert {"shinkai", "shinkai-lite", "hayao-lite"} <= {s["name"] for s in listing["styles"]}
    assert health[0] == 200 and json.loads(health[2]) == {"status": "ok"}


@pytest.mark.parametrize("path, body, status, message", [
    ("/v1/stylize", b"not an image", 415, "not an image"),
    ("/v1/stylize", b"", 415, "not an image"),
    ("/v1/stylize?style=../../weights/shinkai", PHOTO, 400, "unknown style"),
    ("/v1/stylize?max_side=-3", PHOTO, 400, "max_side must be"),
    ("/v1/stylize?max_side=big", PHOTO, 400, "max_side must be"),
    ("/v1/stylize?max_side=0", PHOTO, 400, "from 1 to 1024"),  # full resolution could exhaust memory
    ("/v1/stylize?max_side=4096", PHOTO, 400, "from 1 to 1024"),
    ("/v1/stylize?format=gif", PHOTO, 400, "format must be"),
    ("/v1/elsewhere", PHOTO, 404, "no such path"),
])
def test_bad_requests_get_a_one_line_json_error(tiny_service, path, body, status, message):
    with running(tiny_service) as port:
        got, headers, text = request(port, "POST", path, body)
    assert got == status and headers["Content-Type"] == "application/json"
    error = json.loads(text)["error"]
    assert message in error and "\n" not in error


def test_too_large_or_unsized_bodies_are_refused_before_they_are_read(tiny_service, monkeypatch):
    monkeypatch.setattr(stylize, "MAX_BODY_BYTES", 1000)
    with running(tiny_service) as port:
        assert request(port, "POST", "/v1/stylize", PHOTO)[0] == 413
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /v1/stylize HTTP/1.1\r\nHost: x\r\n\r\n")
            head, body = _read_response(s)
            assert head.startswith(b"HTTP/1.1 411 ") and b"Content-Length" in body
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /v1/stylize HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\nnot an image")
            head, body = _read_response(s)
            assert head.startswith(b"HTTP/1.1 415 ") and b"Content-Length" not in body
    assert tiny_service.built == []


def _read_response(s: socket.socket) -> tuple[bytes, bytes]:
    """One whole HTTP response from a raw socket: its head and its body (which may arrive in a later packet)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, f"connection closed before the response head: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = s.recv(4096)
        assert chunk, f"connection closed after {len(body)} of {length} body bytes"
        body += chunk
    return head, body


def _slow_factory(seconds: float, calls: list):
    def factory(style: str, max_side: int | None):
        def engine(rgb: np.ndarray) -> np.ndarray:
            calls.append(time.monotonic())
            time.sleep(seconds)
            return rgb
        return engine
    return factory


@pytest.mark.parametrize("queue, want", [(0, [200, 503, 503]), (2, [200, 200, 200])])
def test_requests_beyond_the_queue_are_answered_503_at_once(queue, want):
    calls: list[float] = []
    service = StyleService(_slow_factory(0.6, calls), default_style="slow", queue=queue)
    results: list[tuple[int, dict, float]] = []
    lock = threading.Lock()

    def client(port):
        start = time.monotonic()
        status, headers, _ = request(port, "POST", "/v1/stylize", PHOTO)
        with lock:
            results.append((status, headers, time.monotonic() - start))

    with running(service) as port:
        first = threading.Thread(target=client, args=(port,))
        first.start()
        while not calls:  # the first request holds the model
            time.sleep(0.01)
        others = [threading.Thread(target=client, args=(port,)) for _ in range(2)]
        for t in others:
            t.start()
        for t in [first, *others]:
            t.join(30)
    assert sorted(r[0] for r in results) == want
    assert len(calls) == want.count(200)  # one model call at a time, never two at once
    assert all(b - a >= 0.55 for a, b in zip(calls, calls[1:]))
    for status, headers, seconds in results:
        if status == 503:
            assert headers["Retry-After"] == "1" and seconds < 0.5  # refused at once, not after a wait


def test_closing_the_server_waits_for_the_request_in_flight_and_leaves_no_thread():
    before = {t for t in threading.enumerate() if not t.name.startswith("asyncio_")}
    calls: list[float] = []
    service = StyleService(_slow_factory(0.5, calls), default_style="slow", queue=1)
    statuses = []
    client = threading.Thread(target=lambda: statuses.append(request(port, "POST", "/v1/stylize", PHOTO)[0]))
    with running(service) as port:
        client.start()
        while not calls:
            time.sleep(0.01)
    client.join(10)
    assert statuses == [200]  # answered in full, though the server was closed while it ran
    time.sleep(0.2)
    assert {t for t in threading.enumerate() if not t.name.startswith("asyncio_")} == before


def test_the_cli_serves_until_sigterm_then_exits_cleanly(tiny_style):
    proc = subprocess.Popen([sys.executable, "-m", "stream", "serve", "--port", "0", "--style", str(tiny_style),
                             "--max-side", "64", "--precision", "fp32"], cwd=ROOT, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        line = proc.stderr.readline()
        while "serving" not in line and line:  # (a library's deprecation note may come first)
            line = proc.stderr.readline()
        assert "serving 'tiny' on http://127.0.0.1:" in line, line
        port = urlsplit(line.split(" on ")[1].split()[0]).port
        status, _, body = request(port, "POST", "/v1/stylize", PHOTO)
        assert status == 200 and body.startswith(b"\x89PNG")
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=30)[1]
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0
    assert '"POST /v1/stylize" 200' in err and "stopping" in err and "Traceback" not in err


def test_the_cli_says_in_one_line_when_the_port_is_taken(tiny_style, cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        rc, _, err = cli("serve", "--port", taken.getsockname()[1], "--style", tiny_style, "--max-side", 64)
    assert rc == 1 and err.count("\n") == 1
    assert err.startswith("animestream: error: cannot listen on 127.0.0.1:") and "in use" in err


def test_the_cli_refuses_an_unknown_default_style(cli):
    rc, _, err = cli("serve", "--port", 0, "--style", "no-such-style")
    assert rc == 1 and err.startswith("animestream: error:") and "no-such-style" in err


def _urllib_post(url: str, body: bytes, chunked: bool = False) -> tuple[int, str]:
    """(status, error message) for ``body`` POSTed by Python's urllib, which sends ``Connection: close`` and
    its whole body before it reads a byte of the answer."""
    import urllib.error
    import urllib.request

    data = (body[i:i + (1 << 20)] for i in range(0, len(body), 1 << 20)) if chunked else body
    headers = {"Transfer-Encoding": "chunked"} if chunked else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST", headers=headers),
                                    timeout=60) as r:
            return r.status, ""
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())["error"]


def _curl_post(url: str, path: Path, *options: str) -> tuple[int, str]:
    """(status, error message) for the file at ``path`` POSTed by curl (which asks ``Expect: 100-continue``
    for a big body unless told otherwise)."""
    import shutil

    if shutil.which("curl") is None:
        pytest.skip("needs curl")
    out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", "--data-binary", f"@{path}", *options, url],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    body, status = out.stdout.rsplit("\n", 1)
    return int(status), json.loads(body)["error"]


OVER_THE_LIMIT = 40_000_000  # bytes: more than MAX_BODY_BYTES and than any socket buffers hold


@pytest.mark.parametrize("how", ["declared", "chunked"])
def test_a_body_over_the_limit_gets_its_413_in_urllib_not_a_reset(tiny_service, how):
    with running(tiny_service) as port:
        status, error = _urllib_post(f"http://127.0.0.1:{port}/v1/stylize", b"x" * OVER_THE_LIMIT, how == "chunked")
        assert request(port, "GET", "/healthz")[0] == 200  # and the server is fine
    assert status == 413 and error == "the body is over 32 MiB"
    assert tiny_service.built == []


@pytest.mark.parametrize("options", [(), ("-H", "Expect:"), ("-H", "Transfer-Encoding: chunked")],
                         ids=["expect-100-continue", "no-expect", "chunked"])
def test_a_body_over_the_limit_gets_its_413_in_curl(tiny_service, tmp_path, options):
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * OVER_THE_LIMIT)
    with running(tiny_service) as port:
        status, error = _curl_post(f"http://127.0.0.1:{port}/v1/stylize", big, *options)
    assert status == 413 and error == "the body is over 32 MiB"


def test_what_is_read_of_a_refused_body_is_bounded(tiny_service, monkeypatch):
    import urllib.error

    monkeypatch.setattr(middleware, "DRAIN_MAX_BYTES", 1 << 20)
    with running(tiny_service) as port:
        with pytest.raises((ConnectionError, urllib.error.URLError)):  # past the bound: closed, as nginx does
            _urllib_post(f"http://127.0.0.1:{port}/v1/stylize", b"x" * OVER_THE_LIMIT)
        assert request(port, "GET", "/healthz")[0] == 200
