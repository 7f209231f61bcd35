"""Protocol-level readiness checks, run from the host against published ports.

Compose healthchecks run inside each container; these prove a client on the
host gets a real answer: ``SELECT 1``, ``PING``, S3 ``ListBuckets``, LiveKit's
HTTP root, a STUN binding. Only PostgreSQL's needs a driver (psycopg, imported
when its probe runs); the others speak their protocol with the standard
library, so a probe costs its round trip rather than an SDK's import.
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
from typing import BinaryIO

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


class _RedisErrorReply(Exception):
    """An error reply (``-WRONGPASS ...``) from the server."""


def _resp_command(*parts: str) -> bytes:
    encoded = [part.encode("utf-8") for part in parts]
    return b"*%d\r\n" % len(encoded) + b"".join(
        b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded
    )


def _resp_reply(stream: BinaryIO) -> bytes:
    """One reply: a simple or bulk string; an error reply is raised."""
    line = stream.readline(65536)
    if not line.endswith(b"\r\n"):
        raise ConnectionError("the connection closed in the middle of a reply")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body
    if kind == b"-":
        raise _RedisErrorReply(body.decode("utf-8", errors="replace"))
    if kind == b"$" and body.isdigit():
        data = stream.read(int(body) + 2)
        if len(data) != int(body) + 2:
            raise ConnectionError("the connection closed in the middle of a reply")
        return data[:-2]
    raise ConnectionError(f"not a Redis reply: {line[:40]!r}")


def probe_redis(settings: StackSettings, *, timeout: float = 5.0) -> str:
    """``AUTH``, ``PING`` and ``INFO server``; returns the server version.

    Spoken in RESP over a plain socket: three commands do not need a client
    library, and importing redis-py takes longer than the whole exchange.
    """
    where = f"Redis at {settings.infra_public_host}:{settings.redis_port}"
    password = settings.secret("redis_password")
    commands: list[tuple[str, ...]] = [("AUTH", password)] if password else []
    commands += [("PING",), ("INFO", "server")]
    try:
        address = (settings.infra_public_host, settings.redis_port)
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.sendall(b"".join(_resp_command(*command) for command in commands))
            with sock.makefile("rb") as stream:
                replies = [_resp_reply(stream) for _ in commands]
    except _RedisErrorReply as exc:
        # WRONGPASS from Redis 6+, "invalid password" from older ones, NOAUTH
        # when the server wants a password and the settings have none.
        rejected = str(exc).startswith(("WRONGPASS", "NOAUTH")) or "invalid password" in str(exc)
        raise (CredentialsRejected if rejected else ServiceUnavailable)(
            f"{where} did not answer PING: {str(exc).rstrip('.')}"
            + (_VOLUME_HINT.format(var="REDIS_PASSWORD") if rejected else ""),
            service="redis",
        ) from exc
    except OSError as exc:
        raise ServiceUnavailable(f"{where} did not answer PING: {exc}", service="redis") from exc
    if replies[-2] != b"PONG":
        raise ServiceUnavailable(f"{where} answered PING with {replies[-2]!r}", service="redis")
    info = replies[-1].decode("utf-8", errors="replace").splitlines()
    version = next((v for k, _, v in (f.partition(":") for f in info) if k == "redis_version"), "?")
    return f"PING ok, Redis {version.strip()}"


# MinIO's region when none is configured, as in the compose file.
_MINIO_REGION = "us-east-1"


def probe_minio(settings: StackSettings, *, timeout: float = 5.0) -> str:
    """S3 ``ListBuckets`` with the root credentials.

    A presigned ``GET /`` sent with urllib: signing it takes a few hashes,
    where importing the minio SDK takes longer than the request.
    """
    from infra_lib.storage.sigv4 import QuerySigner

    where = f"MinIO at {settings.infra_public_host}:{settings.minio_api_port}"
    signer = QuerySigner(
        endpoint=f"http://{settings.url_host}:{settings.minio_api_port}",
        access_key=settings.minio_root_user or "",
        secret_key=settings.secret("minio_root_password") or "",
        region=_MINIO_REGION,
        addressing="path",
    )
    url = signer.url("GET", "", "", expires=60, headers={})
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            body = response.read()
    except urllib.error.HTTPError as exc:
        code = _s3_error_code(exc.read(4096))
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise CredentialsRejected(
                f"{where} refused the root credentials of the settings ({code}): the running "
                "container was started with another MINIO_ROOT_USER or MINIO_ROOT_PASSWORD; "
                "`inv up` recreates it with the settings' ones",
                service="minio",
            ) from exc
        raise ServiceUnavailable(
            f"{where} refused ListBuckets: HTTP {exc.code} {code or exc.reason}", service="minio"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ServiceUnavailable(
            f"{where} did not answer ListBuckets: {exc}", service="minio"
        ) from exc
    if b"<ListAllMyBucketsResult" not in body:
        raise ServiceUnavailable(
            f"{where} answered ListBuckets with {body[:80]!r}", service="minio"
        )
    return f"ListBuckets ok, {body.count(b'<Bucket>')} bucket(s)"


def _s3_error_code(body: bytes) -> str:
    """The ``<Code>`` of an S3 error document, or ``""``."""
    start = body.find(b"<Code>")
    end = body.find(b"</Code>", start)
    return body[start + 6 : end].decode("ascii", errors="replace") if 0 <= start < end else ""


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


# The driver a probe uses; importing it takes longer than the probe.
_DRIVERS = {"postgres": ("psycopg",)}


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
