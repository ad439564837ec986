"""The HTTP service side by side with the seed's image service, on the same photo, style and cap.

    python bench/serve.py [--style shinkai] [--cap 512] [--requests 24] [--clients 4]
    python bench/serve.py --baseline ../old-checkout --baseline-style paprika --style paprika.safetensors --rounds 3

Each service runs in its own subprocess (its peak RSS is its own); this process is the client. Per
service it prints one JSON line: ``single_s_p50`` (one request at a time, seconds per image),
``qps`` and ``latency_s_p50/p95`` with ``--clients`` concurrent clients, ``refused`` (503s) and the
server's ``peak_rss_mb``; then a line with the ratios.

  seed         the original service's recipe on the standard library's threaded server (FastAPI is
               not a dependency here; its per-request work is what is timed): a bounded pool of 2
               workers, each request decoded, resized to longest side 512 (Lanczos), run through the
               TorchScript model in fp32 under eval + no_grad, encoded as PNG at that size, then
               ``del`` and ``gc.collect()``
  animestream  ``animestream serve``: FastAPI on uvicorn, the engine's default precision, one model call
               at a time, a bounded queue; the result at the input's size (more pixels to encode than the seed)

The photo is samples/astronaut.jpg scaled to 1024x1024, sent as JPEG (quality 90).

``--baseline DIR`` also measures the ``animestream serve`` of another checkout (an earlier release),
running its own ``bench/serve.py --serve animestream`` with that checkout first on the path, in
``--rounds`` alternating with this one (timings on a shared machine drift; alternating spreads the drift
over both); the last line then adds the ratios of the medians, this checkout against the baseline.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PHOTO = ROOT / "samples" / "astronaut.jpg"
PHOTO_SIDE = 1024  # pixels, the photo's side as sent
SINGLE_REQUESTS = 4  # timed one at a time, after one warm-up request
SEED_WORKERS = 2  # the seed's bounded thread pool


def _seed_server(style: str, cap: int):
    import gc
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import cv2

    from bench import seed_stylize  # bench/bench.py, beside this script
    from stream import weights

    model = weights.load_model(style)  # TorchScript fp32, as the seed ran it
    pool = ThreadPoolExecutor(max_workers=SEED_WORKERS)

    def work(body: bytes) -> bytes:
        rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        out = seed_stylize(model, rgb, cap)
        png = cv2.imencode(".png", cv2.cvtColor(out, cv2.COLOR_RGB2BGR))[1].tobytes()
        del rgb, out
        gc.collect()
        return png

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802
            png = pool.submit(work, self.rfile.read(int(self.headers["Content-Length"]))).result()
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *args):
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


def _animestream_server(style: str, cap: int):
    """What ``animestream serve`` runs: the FastAPI app on uvicorn."""
    from stream.engine import Engine
    from stream.serve import StyleService
    from stream.webapp import WebServer, create_app

    engine = Engine(style, max_side=cap)
    service = StyleService(lambda s, m: Engine(s, max_side=cap if m is None else m), default_style=engine.style)
    service.adopt(engine.style, None, engine)
    return WebServer(create_app(service), "127.0.0.1", 0)


def _serve(kind: str, style: str, cap: int) -> None:
    if kind == "seed":
        server = _seed_server(style, cap)
        print(server.server_address[1], flush=True)
        server.serve_forever()  # until the parent kills this process
    else:
        server = _animestream_server(style, cap)
        print(server.port, flush=True)
        server.serve()


def _post(port: int, body: bytes) -> tuple[int, float]:
    import http.client

    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        conn.request("POST", "/v1/stylize", body=body, headers={"Content-Type": "image/jpeg"})
        r = conn.getresponse()
        r.read()
        return r.status, time.perf_counter() - start
    finally:
        conn.close()


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def measure(kind: str, body: bytes, args: argparse.Namespace) -> dict:
    if kind == "baseline":
        import os

        root = Path(args.baseline).resolve()
        style = args.baseline_style or args.style
        proc = subprocess.Popen([sys.executable, str(root / "bench" / "serve.py"), "--serve", "animestream",
                                 "--style", style, "--cap", str(args.cap)], stdout=subprocess.PIPE, text=True,
                                cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    else:
        style = args.style
        proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--style", style, "--cap", str(args.cap)],
                                stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        _post(port, body)  # warm-up: first-call allocations and kernel selection
        single = [_post(port, body)[1] for _ in range(SINGLE_REQUESTS)]
        results: list[tuple[int, float]] = []
        lock = threading.Lock()

        def client(n: int) -> None:
            for _ in range(n):
                r = _post(port, body)
                with lock:
                    results.append(r)

        share = [args.requests // args.clients + (i < args.requests % args.clients) for i in range(args.clients)]
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.clients) as clients:
            list(clients.map(client, share))
        wall = time.perf_counter() - start
        ok = [s for status, s in results if status == 200]
        return {"service": kind, "style": style, "cap": args.cap, "photo": f"{PHOTO_SIDE}x{PHOTO_SIDE}",
                "single_s_p50": round(float(np.median(single)), 3), "clients": args.clients,
                "requests": args.requests, "qps": round(len(ok) / wall, 3),
                "latency_s_p50": round(float(np.percentile(ok, 50)), 3),
                "latency_s_p95": round(float(np.percentile(ok, 95)), 3),
                "refused": len(results) - len(ok), "peak_rss_mb": round(_peak_rss_mb(proc.pid), 1)}
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--style", default="shinkai")
    p.add_argument("--cap", type=int, default=512, help="longest side the model sees, pixels")
    p.add_argument("--requests", type=int, default=24, help="requests in the concurrent phase")
    p.add_argument("--clients", type=int, default=4, help="concurrent clients (animestream queues up to 4)")
    p.add_argument("--baseline", metavar="DIR", help="another checkout whose animestream serve to measure too")
    p.add_argument("--baseline-style", help="the style name in that checkout (default: --style)")
    p.add_argument("--rounds", type=int, default=1, help="baseline / animestream rounds, alternating")
    p.add_argument("--serve", choices=("seed", "animestream"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        return _serve(args.serve, args.style, args.cap)
    import cv2

    photo = cv2.resize(cv2.imread(str(PHOTO)), (PHOTO_SIDE, PHOTO_SIDE), interpolation=cv2.INTER_CUBIC)
    body = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    seed = measure("seed", body, args)
    print(json.dumps(seed), flush=True)
    runs: dict[str, list[dict]] = {"baseline": [], "animestream": []}
    for _ in range(max(1, args.rounds)):
        for kind in ("baseline", "animestream") if args.baseline else ("animestream",):
            runs[kind].append(measure(kind, body, args))
            print(json.dumps(runs[kind][-1]), flush=True)

    def median(kind: str, key: str) -> float:
        return float(np.median([r[key] for r in runs[kind]]))

    summary = {"speedup_single": round(seed["single_s_p50"] / median("animestream", "single_s_p50"), 2),
               "speedup_qps": round(median("animestream", "qps") / seed["qps"], 2),
               "peak_rss_mb": [seed["peak_rss_mb"], median("animestream", "peak_rss_mb")]}
    if args.baseline:
        summary["against_baseline"] = {
            "rounds": len(runs["baseline"]),
            "single_s_p50": [median("baseline", "single_s_p50"), median("animestream", "single_s_p50")],
            "qps": [median("baseline", "qps"), median("animestream", "qps")],
            "latency_s_p95": [median("baseline", "latency_s_p95"), median("animestream", "latency_s_p95")],
            "peak_rss_mb": [median("baseline", "peak_rss_mb"), median("animestream", "peak_rss_mb")],
            "qps_ratio": round(median("animestream", "qps") / median("baseline", "qps"), 3),
            "single_ratio": round(median("baseline", "single_s_p50") / median("animestream", "single_s_p50"), 3)}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
