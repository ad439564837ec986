"""The web service beyond single images: video jobs, the live WebSocket and its MJPEG, and the limits
(slow uploads, bursts, every method and path answering JSON), against a real server on 127.0.0.1."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import media
from stream import weights
from stream.engine import Engine
from stream.jobs import JobQueue, converter
from stream.serve import StyleService
from test_serve import PHOTO, _slow_factory, request, running

pytest.importorskip("fastapi")


@pytest.fixture
def service(tiny_style):
    return StyleService(lambda style, side: Engine(tiny_style, max_side=side or 64, precision="fp32", device="cpu"),
                        default_style="tiny", queue=2)


@pytest.fixture
def jobs(tmp_path, tiny_style):
    def build(_style, side):
        return Engine(tiny_style, max_side=side or 32, precision="fp32", device="cpu")

    queue = JobQueue(tmp_path / "jobs", converter(build), queue=2, quota_bytes=50 << 20, ttl_s=60)
    yield queue
    queue.close()


def _wait_job(port: int, job_id: str, states=("done", "failed"), timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, body = request(port, "GET", f"/v1/jobs/{job_id}")
        assert status == 200
        job = json.loads(body)
        if job["state"] in states:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job['state']}")


def test_a_video_job_runs_reports_progress_and_serves_its_result(service, jobs, clip, tmp_path):
    with running(service, jobs) as port:
        status, _, body = request(port, "POST", "/v1/jobs?name=clip.mp4&max_side=32", clip.read_bytes())
        assert status == 202
        job = json.loads(body)
        assert job["state"] in ("queued", "running") and job["result"] is None
        early = request(port, "GET", f"/v1/jobs/{job['id']}/result")[0]
        done = _wait_job(port, job["id"])
        assert early in (409, 200)
        assert done["state"] == "done" and done["frames_done"] == done["frames_total"] == 30
        status, headers, video = request(port, "GET", done["result"])
    assert status == 200 and headers["Content-Type"] == "video/mp4"
    (tmp_path / "got.mp4").write_bytes(video)
    got, want = media.probe(tmp_path / "got.mp4"), media.probe(clip)
    assert got.times == want.times and got.audio_codec == "aac"
    assert abs(got.audio_duration - want.audio_duration) < 0.05


def test_a_video_job_can_ask_for_deflicker(service, jobs, clip, tmp_path):
    with running(service, jobs) as port:
        results = {}
        for query in ("", "&deflicker=true"):
            status, _, body = request(port, "POST", f"/v1/jobs?name=clip.mp4&max_side=32{query}", clip.read_bytes())
            assert status == 202 and json.loads(body)["deflicker"] == bool(query)
            done = _wait_job(port, json.loads(body)["id"])
            assert done["state"] == "done" and done["frames_done"] == 30 and done["deflicker"] == bool(query)
            status, _, video = request(port, "GET", done["result"])
            results[query] = tmp_path / f"job{len(results)}.mp4"
            results[query].write_bytes(video)
    plain, steady = results[""], results["&deflicker=true"]
    assert media.probe(steady).times == media.probe(plain).times == media.probe(clip).times
    (a, *rest_a), (b, *rest_b) = media.decoded_frames(plain), media.decoded_frames(steady)
    assert cv2.absdiff(a, b).mean() < 1  # the first frame has no history: the same picture
    # later ones blend in the previous result where the flow explains the input (the square's walk)
    assert np.mean([cv2.absdiff(x, y).mean() for x, y in zip(rest_a, rest_b)]) > 0.3


def test_a_bad_video_job_fails_with_its_reason_and_serves_nothing(service, jobs):
    with running(service, jobs) as port:
        job = json.loads(request(port, "POST", "/v1/jobs?name=x.mp4", b"not a video" * 100)[2])
        failed = _wait_job(port, job["id"])
        status, _, body = request(port, "GET", f"/v1/jobs/{job['id']}/result")
    assert failed["state"] == "failed" and "\n" not in failed["error"] and failed["error"]
    assert status == 409 and "failed" in json.loads(body)["error"]


def test_a_running_job_is_cancelled_and_leaves_nothing(service, tmp_path, long_clip):
    def slow(job, progress):
        from stream.filejob import convert_video

        def engine_call(rgb):
            time.sleep(0.02)
            return rgb

        class Slow:
            style, precision, max_side, device = "slow", "fp32", 0, None

            def __call__(self, rgb):
                return engine_call(rgb)

            def inference_shape(self, w, h):
                return w, h

            def reset(self):
                pass

        convert_video(job.upload, job.result, Slow(), progress=False, keep_partial=False, on_progress=progress,
                      cancel=job.cancel)

    queue = JobQueue(tmp_path / "jobs", slow)
    try:
        with running(service, queue) as port:
            job = json.loads(request(port, "POST", "/v1/jobs?name=long.mp4", long_clip.read_bytes())[2])
            _wait_job(port, job["id"], states=("running",))
            status, _, body = request(port, "DELETE", f"/v1/jobs/{job['id']}")
            assert status == 200 and json.loads(body)["state"] == "cancelled"
            deadline = time.monotonic() + 30
            while request(port, "GET", f"/v1/jobs/{job['id']}")[0] != 404 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert request(port, "GET", f"/v1/jobs/{job['id']}")[0] == 404
        assert not any((tmp_path / "jobs").rglob("result*"))
    finally:
        queue.close()


@pytest.mark.parametrize("query, status, words", [
    ("name=notes.txt", 415, "a video job takes"),
    ("name=a.mp4&style=../../x", 400, "unknown style"),
    ("name=a.mp4&format=exe", 400, "format must be"),
])
def test_job_requests_it_cannot_take_are_one_line_json(service, jobs, clip, query, status, words):
    with running(service, jobs) as port:
        got, headers, body = request(port, "POST", f"/v1/jobs?{query}", clip.read_bytes())
    assert got == status and headers["Content-Type"] == "application/json" and words in json.loads(body)["error"]


def test_the_job_queue_and_disk_quota_are_bounded(service, tmp_path, clip):
    started = threading.Event()

    def never_done(job, progress):
        started.set()
        job.cancel.wait(30)

    queue = JobQueue(tmp_path / "jobs", never_done, queue=1, quota_bytes=5 * clip.stat().st_size)
    try:
        with running(service, queue) as port:
            codes = [request(port, "POST", "/v1/jobs?name=a.mp4", clip.read_bytes())[0]]
            started.wait(10)
            codes += [request(port, "POST", "/v1/jobs?name=a.mp4", clip.read_bytes())[0] for _ in range(2)]
            big = request(port, "POST", "/v1/jobs?name=a.mp4", b"x" * (10 * clip.stat().st_size))
        assert codes == [202, 202, 503]  # one running, one waiting, then the queue is full
        assert big[0] in (503, 507)
    finally:
        queue.close()


def test_finished_jobs_expire(service, jobs, clip):
    jobs.ttl_s = 0.5
    with running(service, jobs) as port:
        job = json.loads(request(port, "POST", "/v1/jobs?name=a.mp4&max_side=32", clip.read_bytes())[2])
        _wait_job(port, job["id"])
        time.sleep(0.8)
        assert request(port, "GET", f"/v1/jobs/{job['id']}")[0] == 404
    assert not (Path(jobs.folder) / job["id"]).exists()


def _trickle(port: int, stop: threading.Event) -> None:
    """A client that declares a big body and sends it one byte a second."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"POST /v1/stylize HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
            while not stop.wait(1.0):
                s.sendall(b"x")
    except OSError:
        pass


def test_slow_uploads_hold_no_slot_and_do_not_hold_up_shutdown():
    calls: list[float] = []
    service = StyleService(_slow_factory(0.05, calls), default_style="slow", queue=0)
    stop = threading.Event()
    trickles = []
    with running(service, shutdown_timeout_s=2) as port:
        trickles = [threading.Thread(target=_trickle, args=(port, stop)) for _ in range(5)]
        for t in trickles:
            t.start()
        time.sleep(1.5)
        status, _, _ = request(port, "POST", "/v1/stylize", PHOTO)  # with queue=0: the only slot is free
        assert status == 200
        t0 = time.monotonic()
    stopped_in = time.monotonic() - t0
    stop.set()
    for t in trickles:
        t.join(10)
    assert stopped_in < 8  # graceful shutdown gives uploads 2 s, it does not wait for them to finish


def test_a_burst_gets_answers_not_resets():
    calls: list[float] = []
    service = StyleService(_slow_factory(0.2, calls), default_style="slow", queue=1)
    statuses: list[int | str] = []
    lock = threading.Lock()

    def client(port):
        try:
            status = request(port, "POST", "/v1/stylize", PHOTO)[0]
        except (ConnectionError, http.client.HTTPException) as e:
            status = type(e).__name__
        with lock:
            statuses.append(status)

    with running(service) as port:
        threads = [threading.Thread(target=client, args=(port,)) for _ in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert len(statuses) == 24 and set(statuses) <= {200, 503} and statuses.count(200) >= 2


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_every_method_and_path_answers_json(service, method):
    with running(service) as port:
        status, headers, body = request(port, method, "/v1/stylize")
        other = request(port, method, "/somewhere/else")
    assert status == 405 and headers["Content-Type"] == "application/json" and method in json.loads(body)["error"]
    assert other[0] in (404, 405) and other[1]["Content-Type"] == "application/json"


def test_an_image_bomb_is_refused_before_decoding(service):
    from test_errors import _png_declaring

    with running(service) as port:
        status, _, body = request(port, "POST", "/v1/stylize", _png_declaring(20000, 20000))
    assert status == 413 and "20000x20000" in json.loads(body)["error"]


def test_the_api_is_described_and_the_page_is_served(service, jobs):
    with running(service, jobs) as port:
        spec = json.loads(request(port, "GET", "/openapi.json")[2])
        page = request(port, "GET", "/")
        docs = request(port, "GET", "/docs")
        thumb = request(port, "GET", "/v1/styles/tiny/thumbnail")
    assert {"/v1/stylize", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/styles"} <= set(spec["paths"])
    assert page[0] == 200 and b"animestream" in page[2] and b"cdn" not in page[2].lower()
    assert docs[0] == 200 and thumb[0] == 200 and thumb[1]["Content-Type"] == "image/jpeg"


ROUTES_WITHOUT_JOBS = [
    ("/", ["GET"]), ("/docs", ["GET", "HEAD"]), ("/docs/oauth2-redirect", ["GET", "HEAD"]), ("/healthz", ["GET"]),
    ("/openapi.json", ["GET", "HEAD"]), ("/redoc", ["GET", "HEAD"]), ("/v1/live", []),
    ("/v1/live/{session_id}/mjpeg", ["GET"]), ("/v1/styles", ["GET"]), ("/v1/styles/{name}/thumbnail", ["GET"]),
    ("/v1/stylize", ["POST"]),
]
JOB_ROUTES = [("/v1/jobs", ["POST"]), ("/v1/jobs/{job_id}", ["DELETE"]), ("/v1/jobs/{job_id}", ["GET"]),
              ("/v1/jobs/{job_id}/result", ["GET"])]


def _route_set(app) -> list[tuple[str, list[str]]]:
    """(path, methods) of every route the app serves; FastAPI 0.137.2 and later keep an included router
    as one node of ``app.routes``, which ``iter_route_contexts`` opens (earlier ones copied its routes in)."""
    from fastapi import routing

    routes = routing.iter_route_contexts(app.routes) if hasattr(routing, "iter_route_contexts") else app.routes
    return sorted((r.path, sorted(getattr(r, "methods", None) or [])) for r in routes)


@pytest.mark.parametrize("with_jobs", [True, False], ids=["with-jobs", "without-jobs"])
def test_the_app_serves_the_same_routes_it_always_did(service, jobs, with_jobs):
    from stream.web import create_app

    app = create_app(service, jobs if with_jobs else None)
    try:
        assert _route_set(app) == sorted(ROUTES_WITHOUT_JOBS + (JOB_ROUTES if with_jobs else []))
    finally:
        app.state.web.model_thread.shutdown()


def test_the_live_websocket_stylises_the_newest_frame_and_serves_mjpeg(service, tiny_style):
    from websockets.sync.client import connect

    from test_live import _mjpeg_parts

    frame = media.frame_image(3, 96, 72)
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    want = Engine(tiny_style, max_side=64, precision="fp32", device="cpu")(
        cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    with running(service) as port, connect(f"ws://127.0.0.1:{port}/v1/live?max_side=64") as ws:
        hello = json.loads(ws.recv(10))
        assert hello["type"] == "hello" and hello["style"] == weights.DEFAULT_LIVE_STYLE  # the live default
        mjpeg: list[bytes] = []
        viewer = threading.Thread(target=lambda: mjpeg.extend(_mjpeg_parts(
            f"http://127.0.0.1:{port}{hello['mjpeg']}", 2)))
        viewer.start()
        results, stats = [], []
        for _ in range(3):
            ws.send(jpeg)
            while True:
                message = ws.recv(30)
                if isinstance(message, bytes):
                    results.append(message)
                else:
                    stats.append(json.loads(message))
                    break
        ws.send(json.dumps({"style": "no-such"}))
        assert json.loads(ws.recv(10))["type"] == "error"
        viewer.join(30)
    got = cv2.cvtColor(cv2.imdecode(np.frombuffer(results[-1], np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 3  # the engine's picture, through JPEG
    assert stats[-1]["frames"] == 3 and stats[-1]["latency_ms"] > 0 and stats[-1]["style"] == weights.DEFAULT_LIVE_STYLE
    assert len(mjpeg) == 2 and all(p.startswith(b"\xff\xd8") for p in mjpeg)


def test_the_cli_refuses_a_port_out_of_range_in_one_line(cli, capsys):
    with pytest.raises(SystemExit) as e:
        cli("serve", "--port", 99999)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "0..65535" in err and "Traceback" not in err


@pytest.mark.parametrize("how", ["declared", "chunked"])
def test_a_video_over_the_limit_gets_its_413_in_urllib_and_leaves_nothing(service, jobs, monkeypatch, how):
    from stream.web import jobs as job_routes
    from test_serve import _urllib_post

    monkeypatch.setattr(job_routes, "MAX_UPLOAD_BYTES", 1 << 20)
    with running(service, jobs) as port:
        status, error = _urllib_post(f"http://127.0.0.1:{port}/v1/jobs?name=a.mp4", b"x" * 24_000_000,
                                     how == "chunked")
    assert status == 413 and error.endswith(" is over 1 MiB")
    assert not [p for p in Path(jobs.folder).rglob("*") if p.is_file()]


def test_a_live_frame_over_the_limit_is_answered_with_an_error(service, monkeypatch):
    from websockets.sync.client import connect

    from stream.web import live

    monkeypatch.setattr(live, "LIVE_MAX_FRAME_BYTES", 1 << 20)
    with running(service) as port, connect(f"ws://127.0.0.1:{port}/v1/live") as ws:
        assert json.loads(ws.recv(10))["type"] == "hello"
        ws.send(b"\xff\xd8" + b"x" * (2 << 20))
        answer = json.loads(ws.recv(10))
    assert answer == {"type": "error", "error": "a frame over 1 MiB was skipped"}
