"""Throughput and p99 latency through the gateway vs. straight to the same upstream.

The upstream is MinIO's liveness endpoint (a small GET), asked directly on
its published port and through ``https://s3.<host>`` in the same run, with
keep-alive connections from a few client threads; then the rate of full TLS
handshakes (new connection, no session reuse) against the gateway. Target:
through-gateway throughput at least 0.8x direct.

The load generator is wrk (Debian's `wrk`) when it is installed: it is C,
so its own cost hardly weighs on either side; wrk does not check the
certificate, which the handshake measurement (Python, with the project's
CA) does. Without wrk, or with `--python`, Python threads generate the
load; on a small machine their TLS work is then part of what is measured,
and the ratio is lower than the gateway's own.

    python benchmarks/bench_gateway.py [--seconds 5] [--threads 4] [--python]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra_lib.gateway.layer import GatewayPaths, is_enabled
from infra_lib.stack.settings import load_stack_settings

PATH = "/minio/health/live"


def _load(
    connect: Callable[[], http.client.HTTPConnection], host: str, seconds: float, threads: int
) -> tuple[float, float]:
    """Requests per second and p99 latency (ms) of ``threads`` keep-alive clients."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    stop = time.perf_counter() + seconds

    def worker(mine: list[float]) -> None:
        conn = connect()
        while time.perf_counter() < stop:
            start = time.perf_counter()
            conn.request("GET", PATH, headers={"Host": host})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {host}{PATH} answered {response.status}")
            mine.append(time.perf_counter() - start)
        conn.close()

    pool = [threading.Thread(target=worker, args=(lat,)) for lat in latencies]
    began = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - began
    every = sorted(x for lat in latencies for x in lat)
    p99 = every[int(len(every) * 0.99) - 1] * 1000 if every else float("nan")
    return len(every) / elapsed, p99


_WRK_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_WRK_P99 = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)$", re.MULTILINE)
_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk(wrk: str, url: str, host: str, seconds: float, threads: int) -> tuple[float, float]:
    """Requests per second and p99 latency (ms) from wrk, two connections per thread."""
    argv = [wrk, f"-t{threads}", f"-c{2 * threads}", f"-d{max(1, round(seconds))}s", "--latency"]
    done = subprocess.run(
        [*argv, "-H", f"Host: {host}", url], capture_output=True, text=True, check=True
    )
    if "Non-2xx" in done.stdout or "Socket errors" in done.stdout:
        raise RuntimeError(f"wrk saw failed requests to {url}:\n{done.stdout}")
    rps, p99 = _WRK_RPS.search(done.stdout), _WRK_P99.search(done.stdout)
    if rps is None or p99 is None:
        raise RuntimeError(f"cannot read wrk's output:\n{done.stdout}")
    return float(rps[1]), float(p99[1]) * _TO_MS[p99[2]]


def _handshakes(port: int, context: ssl.SSLContext, name: str, seconds: float) -> float:
    """Full TLS handshakes per second: Python resumes a session only when given one."""
    count = 0
    stop = time.perf_counter() + seconds
    began = time.perf_counter()
    while time.perf_counter() < stop:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=name),
        ):
            count += 1
    return count / (time.perf_counter() - began)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--python", action="store_true", help="Python load even if wrk exists")
    args = parser.parse_args()
    wrk = None if args.python else shutil.which("wrk")
    settings = load_stack_settings(ROOT / ".env", environ=os.environ)
    if is_enabled(settings):
        return _run(args.seconds, args.threads, wrk)
    # Off by default: switched on for the run and off again afterwards.
    _inv("up", "--with", "gateway")
    try:
        return _run(args.seconds, args.threads, wrk)
    finally:
        _inv("up", "--without", "gateway", "--no-provision")


def _inv(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=ROOT, check=True, capture_output=True
    )


def _run(seconds: float, threads: int, wrk: str | None) -> int:
    settings = load_stack_settings(ROOT / ".env", environ=os.environ)
    ca = GatewayPaths(ROOT / "env" / settings.compose_project_name).ca_cert
    context = ssl.create_default_context(cafile=str(ca))
    https_port = settings.gateway_https_port
    s3_name = f"s3.{settings.gateway_host}"

    def direct() -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", settings.minio_api_port, timeout=10)

    def gateway() -> http.client.HTTPConnection:
        # 127.0.0.1 is in the certificate; the Host header picks s3.<host>.
        return http.client.HTTPSConnection("127.0.0.1", https_port, timeout=10, context=context)

    through_host = f"{s3_name}:{https_port}"
    if wrk is not None:
        direct_url = f"http://127.0.0.1:{settings.minio_api_port}{PATH}"
        through_url = f"https://127.0.0.1:{https_port}{PATH}"
        _wrk(wrk, direct_url, "127.0.0.1", 1.0, threads)  # warm-up
        _wrk(wrk, through_url, through_host, 1.0, threads)
        direct_rps, direct_p99 = _wrk(wrk, direct_url, "127.0.0.1", seconds, threads)
        gw_rps, gw_p99 = _wrk(wrk, through_url, through_host, seconds, threads)
    else:
        _load(direct, "127.0.0.1", 1.0, threads)  # warm-up
        _load(gateway, through_host, 1.0, threads)
        direct_rps, direct_p99 = _load(direct, "127.0.0.1", seconds, threads)
        gw_rps, gw_p99 = _load(gateway, through_host, seconds, threads)
    rate = _handshakes(https_port, context, s3_name, 3.0)
    ratio = gw_rps / direct_rps
    print(f"gateway load generator: {wrk or 'python threads'}")
    print(f"gateway direct_rps={direct_rps:.0f} direct_p99_ms={direct_p99:.2f}")
    print(f"gateway through_rps={gw_rps:.0f} through_p99_ms={gw_p99:.2f} ratio={ratio:.2f}")
    print(f"gateway tls_full_handshakes_per_s={rate:.0f} (one client, sequential)")
    print(f"gateway through >= 0.8x direct: {'yes' if ratio >= 0.8 else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
