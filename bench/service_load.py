"""The web service under load and attack: `ferkit serve` on 127.0.0.1, bounded requests, one run.

    python bench/service_load.py                    # fuzz set, four 50-megapixel bombs, 100 concurrent uploads
    python bench/service_load.py --concurrent 10 --bombs 1 --out /tmp/x.json   # a small run (the test's)
    python bench/service_load.py --serve-args "--max-side 320"                  # options for ferkit serve

It starts `ferkit serve` on a free loopback port in its own process, waits for /health, and then:
1. sends a fixed fuzz set one at a time (empty, junk bytes, truncated JPEG, a text file, a wrong
   field name, a GIF of one pixel, an oversized body);
2. sends `--bombs` 50-megapixel PNGs (about 160 KB each) at once;
3. sends `--concurrent` uploads of a real portrait (matplotlib's Grace Hopper) at once, from one
   asyncio client with a connection each and the multipart body encoded once: the load generator
   shares the 2 cores with the server, and 100 client threads that each build their own client
   (what this benchmark did first) cost about as much CPU as the server's own work. It does so
   `--bursts` times, one after another: one burst's p95 is the fifth-slowest of 100 requests, so
   one burst alone varied by 0.2 s from run to run.
It prints the status counts of each phase, p50/p95 latency of the concurrent uploads, and the
server's resident memory (RSS) before, after the bombs and after the burst; then stops the server.
Every request has a timeout; the run ends by itself. Nothing leaves the machine.
"""
from __future__ import annotations

import argparse
import io
import json
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png(width: int, height: int) -> bytes:
    """A blank PNG: a few hundred KB that decode to width x height pixels."""
    from PIL import Image
    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def portrait() -> bytes:
    import matplotlib
    return (Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").read_bytes()


def fuzz_set(photo: bytes) -> list[tuple[str, dict]]:
    """(name, httpx keyword arguments) of malformed requests."""
    return [
        ("empty file", {"files": {"file": ("e.jpg", b"", "image/jpeg")}}),
        ("junk bytes", {"files": {"file": ("j.jpg", b"\x00\x01junk" * 100, "image/jpeg")}}),
        ("truncated jpeg", {"files": {"file": ("t.jpg", photo[: len(photo) // 3], "image/jpeg")}}),
        ("text file", {"files": {"file": ("a.txt", b"hello", "text/plain")}}),
        ("wrong field", {"files": {"image": ("p.jpg", photo, "image/jpeg")}}),
        ("no body", {}),
        ("one-pixel gif", {"files": {"file": ("g.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif")}}),
        ("11 MB body", {"files": {"file": ("big.jpg", b"\xff" * (11 << 20), "image/jpeg")}}),
    ]


def rss_mb(pid: int) -> float:
    import psutil
    return psutil.Process(pid).memory_info().rss / 2**20


def post(url: str, kwargs: dict, timeout: float) -> tuple[int, float]:
    import httpx
    start = time.perf_counter()
    try:
        status = httpx.post(f"{url}/predict", timeout=timeout, **kwargs).status_code
    except httpx.HTTPError:
        status = 0  # no answer in time, or the connection dropped
    return status, time.perf_counter() - start


def burst(url: str, requests: list[dict], timeout: float) -> list[tuple[int, float]]:
    """All `requests` at once, each on its own connection."""
    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda kw: post(url, kw, timeout), requests))


def upload_burst(url: str, photo: bytes, n: int, timeout: float) -> list[tuple[int, float, float | None]]:
    """n uploads of `photo` at once from one asyncio client: (status, seconds, the server's own ms)."""
    import asyncio

    import httpx
    body, headers = encode_upload(photo)

    async def one(client) -> tuple[int, float, float | None]:
        start = time.perf_counter()
        try:
            r = await client.post(f"{url}/predict", content=body, headers=headers)
            ms = r.json().get("ms") if r.status_code == 200 else None
            return r.status_code, time.perf_counter() - start, ms
        except httpx.HTTPError:
            return 0, time.perf_counter() - start, None

    async def run() -> list:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            return await asyncio.gather(*(one(client) for _ in range(n)))
    return asyncio.run(run())


def encode_upload(photo: bytes) -> tuple[bytes, dict]:
    """The multipart/form-data body of one `file` upload, and its headers."""
    boundary = "ferkit-bench-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + photo + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank percentile of sorted values (q in 0..1)."""
    return sorted_values[min(len(sorted_values) - 1, max(0, int(round(q * len(sorted_values))) - 1))]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--concurrent", type=int, default=100, help="valid uploads sent at once (100)")
    ap.add_argument("--bursts", type=int, default=3,
                    help="bursts of --concurrent uploads, one after another (3): p95 is over all of them")
    ap.add_argument("--bombs", type=int, default=4, help="50-megapixel PNGs sent at once (4)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per request (60)")
    ap.add_argument("--serve-args", default="", help='options for ferkit serve, e.g. "--max-side 320"')
    ap.add_argument("--out", default=str(HERE / "results" / "service_load.json"))
    args = ap.parse_args(argv)
    import httpx

    from ferkit.runtime.device import cpu_info

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "ferkit", "serve", "--host", "127.0.0.1", "--port", str(port),
                               *args.serve_args.split()],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"ferkit serve did not start: {server.stderr.read()[-2000:] if server.stderr else ''}")
            time.sleep(0.5)
        photo = portrait()
        post(url, {"files": {"file": ("p.jpg", photo, "image/jpeg")}}, args.timeout)  # warm-up
        rss = {"start": rss_mb(server.pid)}
        fuzz = {name: post(url, kw, args.timeout)[0] for name, kw in fuzz_set(photo)}
        bomb = png(7100, 7100)
        bombs = burst(url, [{"files": {"file": ("bomb.png", bomb, "image/png")}}] * args.bombs, args.timeout)
        time.sleep(1.0)
        rss["after_bombs"] = rss_mb(server.pid)
        bursts = []
        for _ in range(args.bursts):
            bursts.append(upload_burst(url, photo, args.concurrent, args.timeout))
            time.sleep(1.0)
        uploads = [u for b in bursts for u in b]
        rss["after_burst"] = rss_mb(server.pid)
        alive = httpx.get(f"{url}/health", timeout=5).status_code == 200
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    latencies = sorted(t for _, t, _ in uploads)
    p95 = percentile(latencies, 0.95)
    server_ms = sorted(ms for _, _, ms in uploads if ms is not None)
    report = {
        "machine": cpu_info(), "command": " ".join(["python", "bench/service_load.py"] + (argv if argv is not None else sys.argv[1:])),
        "fuzz_status": fuzz, "bomb_status": dict(Counter(s for s, _ in bombs)), "bomb_bytes": len(bomb),
        "serve_args": args.serve_args, "upload_status": dict(Counter(s for s, _, _ in uploads)), "concurrent": args.concurrent,
        "bursts": args.bursts, "burst_p95_s": [percentile(sorted(t for _, t, _ in b), 0.95) for b in bursts],
        "latency_p50_s": statistics.median(latencies), "latency_p95_s": p95, "latency_max_s": latencies[-1],
        "server_ms_p50": percentile(server_ms, 0.5) if server_ms else None,
        "server_ms_p95": percentile(server_ms, 0.95) if server_ms else None,
        "rss_mb": rss, "rss_growth_mb": rss["after_burst"] - rss["start"], "alive_after": alive,
        "server_5xx": sum(1 for s in [*fuzz.values(), *(s for s, _ in bombs), *(s for s, _, _ in uploads)] if s >= 500),
    }
    print(f"cpu: {report['machine']['cpu_model']} ({report['machine']['torch_capability']})")
    print("fuzz:", ", ".join(f"{k} {v}" for k, v in fuzz.items()))
    print(f"{args.bombs} bombs of 7100x7100 ({len(bomb) / 1e3:.0f} KB each) at once:", report["bomb_status"])
    print(f"{args.bursts} bursts of {args.concurrent} concurrent uploads:", report["upload_status"],
          f"p50 {report['latency_p50_s']:.2f} s, p95 {p95:.2f} s (per burst: "
          f"{', '.join(f'{t:.2f}' for t in report['burst_p95_s'])}), max {latencies[-1]:.2f} s "
          f"(the server's own time per request: p50 {report['server_ms_p50']} ms, p95 {report['server_ms_p95']} ms)")
    print(f"server RSS MB: start {rss['start']:.0f}, after the bombs {rss['after_bombs']:.0f}, after the burst "
          f"{rss['after_burst']:.0f} (growth {report['rss_growth_mb']:+.0f}); 5xx answers: {report['server_5xx']}; "
          f"alive after: {alive}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
