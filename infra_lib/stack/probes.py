"""Protocol-level readiness checks, run from the host against published ports.

Compose healthchecks run inside each container; these prove a client on the
host gets a real answer: ``SELECT 1``, ``PING``, S3 ``ListBuckets``, LiveKit's
HTTP root, a STUN binding. Each driver is imported only when its probe runs.
"""

from __future__ import annotations

import os
import socket
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from infra_lib.errors import CredentialsRejected, ServiceUnavailable
from infra_lib.stack.settings import StackSettings

__all__ = [
    "PROBES",
    "ProbeResult",
    "probe",
    "probe_coturn",
    "probe_jaeger",
    "probe_livekit",
    "probe_minio",
    "probe_otelcol",
    "probe_postgres",
    "probe_redis",
    "probe_victorialogs",
    "stun_binding",
    "wait_for",
]

_STUN_MAGIC = 0x2112A442
_STUN_BINDING_REQUEST = 0x0001
_STUN_BINDING_SUCCESS = 0x0101
_XOR_MAPPED_ADDRESS = 0x0020


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one probe: what answered and how long it took."""

    service: str
    detail: str
    seconds: float


_VOLUME_HINT = (
    ". The server refuses the {var} of the settings: its data volume was most likely made "
    "with another one (a new `.env`, `inv init --force --new-secrets`, or another checkout's). "
    "Put the old value back (`inv init --force` kept the previous file as .env.bak-*), or start "
    "over with `inv down --volumes --yes`, which deletes the data"
)


def probe_postgres(settings: StackSettings, *, timeout: float = 5.0) -> str:
    """``SELECT 1`` as the admin role over TCP; returns the server version."""
    import psycopg

    try:
        with psycopg.connect(
            host=settings.infra_public_host,
            port=settings.postgres_port,
            user=settings.postgres_user,
            password=settings.secret("postgres_password"),
            dbname=settings.postgres_db,
            connect_timeout=max(1, int(timeout)),
        ) as conn:
            row = conn.execute("SELECT 1, current_setting('server_version')").fetchone()
    except psycopg.Error as exc:
        # 28P01: invalid_password, sent once the server is up and has read its volume.
        rejected = exc.sqlstate == "28P01" or "password authentication failed" in str(exc)
        raise (CredentialsRejected if rejected else ServiceUnavailable)(
            f"PostgreSQL at {settings.infra_public_host}:{settings.postgres_port} did not answer "
            f"SELECT 1: {exc}" + (_VOLUME_HINT.format(var="POSTGRES_PASSWORD") if rejected else ""),
            service="postgres",
        ) from exc
    if row is None or row[0] != 1:
        raise ServiceUnavailable("PostgreSQL answered SELECT 1 with no row", service="postgres")
    return f"SELECT 1 ok, PostgreSQL {str(row[1]).split()[0]}"


def probe_redis(settings: StackSettings, *, timeout: float = 5.0) -> str:
    """``PING`` with the password; returns the server version."""
    import redis

    client = redis.Redis(
        host=settings.infra_public_host,
        port=settings.redis_port,
        password=settings.secret("redis_password"),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    try:
        if not client.ping():
            raise ServiceUnavailable("Redis did not answer PONG", service="redis")
        info = client.info("server")
    except redis.RedisError as exc:
        rejected = isinstance(exc, redis.AuthenticationError) or "WRONGPASS" in str(exc)
        raise (CredentialsRejected if rejected else ServiceUnavailable)(
            f"Redis at {settings.infra_public_host}:{settings.redis_port} did not answer PING: "
            f"{exc}" + (_VOLUME_HINT.format(var="REDIS_PASSWORD") if rejected else ""),
            service="redis",
        ) from exc
    finally:
        client.close()
    return f"PING ok, Redis {info.get('redis_version', '?')}"


def probe_minio(settings: StackSettings, *, timeout: float = 5.0) -> str:
    """S3 ``ListBuckets`` with the root credentials."""
    import urllib3
    from minio import Minio
    from minio.error import MinioException

    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
        retries=urllib3.Retry(total=0),
    )
    client = Minio(
        f"{settings.url_host}:{settings.minio_api_port}",
        access_key=settings.minio_root_user or "",
        secret_key=settings.secret("minio_root_password"),
        secure=False,
        http_client=http,
    )
    try:
        buckets = client.list_buckets()
    except (MinioException, urllib3.exceptions.HTTPError) as exc:
        raise ServiceUnavailable(
            f"MinIO at {settings.infra_public_host}:{settings.minio_api_port} refused "
            f"ListBuckets: {exc}",
            service="minio",
        ) from exc
    finally:
        http.clear()
    return f"ListBuckets ok, {len(buckets)} bucket(s)"


def probe_livekit(settings: StackSettings, *, timeout: float = 5.0) -> str:
    """``GET /`` on LiveKit's HTTP port answers 200 ``OK``."""
    url = f"http://{settings.url_host}:{settings.livekit_http_port}/"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read(64).decode(errors="replace").strip()
            status = response.status
    except (urllib.error.URLError, OSError) as exc:
        raise ServiceUnavailable(
            f"LiveKit at {url} did not answer: {exc}", service="livekit"
        ) from exc
    if status != 200 or body != "OK":
        raise ServiceUnavailable(
            f"LiveKit at {url} answered {status} {body!r}, expected 200 'OK'", service="livekit"
        )
    return "HTTP 200 OK"


def stun_binding(host: str, port: int, *, timeout: float = 2.0) -> tuple[str, int]:
    """Send one STUN Binding Request over UDP; return the mapped address."""
    transaction = os.urandom(12)
    request = struct.pack("!HHI", _STUN_BINDING_REQUEST, 0, _STUN_MAGIC) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(request, (host, port))
        data, _ = sock.recvfrom(2048)
    if len(data) < 20:
        raise ValueError("short STUN response")
    kind, length, magic = struct.unpack("!HHI", data[:8])
    if kind != _STUN_BINDING_SUCCESS or magic != _STUN_MAGIC or data[8:20] != transaction:
        raise ValueError(f"unexpected STUN response type 0x{kind:04x}")
    offset = 20
    while offset + 4 <= 20 + length:
        attr, attr_len = struct.unpack("!HH", data[offset : offset + 4])
        value = data[offset + 4 : offset + 4 + attr_len]
        if attr == _XOR_MAPPED_ADDRESS and len(value) >= 8 and value[1] == 0x01:
            xport = struct.unpack("!H", value[2:4])[0] ^ (_STUN_MAGIC >> 16)
            xaddr = struct.unpack("!I", value[4:8])[0] ^ _STUN_MAGIC
            return socket.inet_ntoa(struct.pack("!I", xaddr)), xport
        offset += 4 + attr_len + (-attr_len % 4)
    raise ValueError("STUN response without an XOR-MAPPED-ADDRESS")


def probe_coturn(settings: StackSettings, *, timeout: float = 2.0) -> str:
    """A STUN binding over UDP to coturn's listening port."""
    try:
        addr, port = stun_binding(settings.infra_public_host, settings.turn_port, timeout=timeout)
    except (OSError, ValueError) as exc:
        raise ServiceUnavailable(
            f"coturn at {settings.infra_public_host}:{settings.turn_port}/udp gave no STUN "
            f"binding response: {exc}",
            service="coturn",
        ) from exc
    return f"STUN binding ok, mapped {addr}:{port}"


def probe_victoriametrics(settings: StackSettings, *, timeout: float = 2.0) -> str:
    """``GET /health`` of the observability layer's metrics store."""
    url = f"http://{settings.url_host}:{settings.metrics_port}/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read(64)
    except (urllib.error.URLError, OSError) as exc:
        raise ServiceUnavailable(
            f"VictoriaMetrics at {url} does not answer: {exc}", service="victoriametrics"
        ) from exc
    if body.strip() != b"OK":
        raise ServiceUnavailable(
            f"VictoriaMetrics at {url} answered {body!r}, not OK", service="victoriametrics"
        )
    return "GET /health: OK"


def probe_victorialogs(settings: StackSettings, *, timeout: float = 2.0) -> str:
    """``GET /health`` of the observability layer's log store."""
    url = f"http://{settings.url_host}:{settings.logs_port}/health"
    body = _http(url, "victorialogs", "VictoriaLogs", timeout=timeout)
    if body.strip() != b"OK":
        raise ServiceUnavailable(
            f"VictoriaLogs at {url} answered {body!r}, not OK", service="victorialogs"
        )
    return "GET /health: OK"


def probe_jaeger(settings: StackSettings, *, timeout: float = 2.0) -> str:
    """``GET /api/services`` of the trace store's query API."""
    url = f"http://{settings.url_host}:{settings.traces_ui_port}/api/services"
    _http(url, "jaeger", "Jaeger", timeout=timeout)
    return "GET /api/services: 200"


def probe_otelcol(settings: StackSettings, *, timeout: float = 2.0) -> str:
    """An empty OTLP/HTTP export to the collector, which a running receiver accepts."""
    url = f"http://{settings.url_host}:{settings.otlp_http_port}/v1/logs"
    _http(url, "otelcol", "the OpenTelemetry Collector", timeout=timeout, json_body=b"{}")
    return "OTLP/HTTP POST /v1/logs: 200"


def _http(
    url: str, service: str, what: str, *, timeout: float, json_body: bytes | None = None
) -> bytes:
    from infra_lib.observability.http import request

    return request(
        url, service=service, what=f"{what} at {url}", timeout=timeout, json_body=json_body
    )[:64]


def probe_gateway(settings: StackSettings, *, timeout: float = 2.0) -> str:
    """``GET /health`` of the gateway on its plain-HTTP port (no CA needed)."""
    url = f"http://{settings.url_host}:{settings.gateway_http_port}/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read(64)
    except (urllib.error.URLError, OSError) as exc:
        raise ServiceUnavailable(
            f"the gateway at {url} does not answer: {exc}", service="gateway"
        ) from exc
    if b'"ok"' not in body:
        raise ServiceUnavailable(f"the gateway at {url} answered {body!r}", service="gateway")
    return "GET /health: ok"


PROBES: dict[str, Callable[..., str]] = {
    "postgres": probe_postgres,
    "redis": probe_redis,
    "minio": probe_minio,
    "livekit": probe_livekit,
    "coturn": probe_coturn,
    "victoriametrics": probe_victoriametrics,
    "victorialogs": probe_victorialogs,
    "jaeger": probe_jaeger,
    "otelcol": probe_otelcol,
    "gateway": probe_gateway,
}


# The drivers the probes use; importing them costs about a second here.
_DRIVERS = {"postgres": ("psycopg",), "redis": ("redis",), "minio": ("urllib3", "minio")}


def preload(services: Sequence[str]) -> None:
    """Import the probes' drivers for ``services`` in the background.

    Meant to be called before ``docker compose up``: the imports then run
    while Compose works, not after it, when the probes need them.
    """
    import importlib
    import threading

    modules = [m for s in services for m in _DRIVERS.get(s, ())]

    def load() -> None:
        for module in modules:
            try:
                importlib.import_module(module)
            except ImportError:
                return  # the probe itself says which extra is missing

    if modules:
        threading.Thread(target=load, name="probe-drivers", daemon=True).start()


def probe(settings: StackSettings, service: str) -> ProbeResult:
    """Run the probe of ``service`` once."""
    start = time.perf_counter()
    if service not in PROBES:
        # Published nowhere (an exporter, vmalert): the metrics store scrapes it.
        return ProbeResult(service, "internal; see `inv metrics`", 0.0)
    detail = PROBES[service](settings)
    return ProbeResult(service, detail, time.perf_counter() - start)


def wait_for(
    settings: StackSettings,
    services: Sequence[str],
    *,
    timeout: float = 60.0,
    interval: float = 0.5,
) -> list[ProbeResult]:
    """Probe each service until it answers or ``timeout`` passes.

    On timeout raises the last :class:`ServiceUnavailable`, so the message
    carries the underlying error rather than a bare "timed out".
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    deadline = time.monotonic() + timeout
    # Once one service has failed for good the others' retries help nobody.
    failed = threading.Event()

    def until_up(service: str) -> ProbeResult | None:
        try:
            while not failed.is_set():
                try:
                    return probe(settings, service)
                except CredentialsRejected:
                    # A wrong password stays wrong: waiting out the timeout helps nobody.
                    raise
                except ServiceUnavailable as exc:
                    if time.monotonic() >= deadline:
                        raise ServiceUnavailable(
                            f"{exc} (still failing after {timeout:.0f}s)", service=service
                        ) from exc
                    failed.wait(interval)
        except BaseException:
            failed.set()
            raise
        return None

    if not services:
        return []
    # The probes are independent and mostly wait on the network: run them
    # side by side, and report them (or the first failure) in the given order.
    with ThreadPoolExecutor(max_workers=min(8, len(services))) as pool:
        futures = [pool.submit(until_up, service) for service in services]
        for future in futures:
            if future.exception() is not None:
                future.result()
        return [r for r in (f.result() for f in futures) if r is not None]
