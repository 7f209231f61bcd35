"""The gateway against real sockets: HTTPS with the project's CA, WebSockets, 502/504,
presigned storage through s3.<host>, LiveKit signalling through livekit.<host>,
config checked before it is applied, and graceful reloads.

The gateway is off by default, so this module switches it on itself (`inv up
--with gateway`) when it is off, and off again afterwards. A small HTTP and
WebSocket server runs on the host, declared in a throwaway manifest; the
stack's own config is put back at the end.

``*.localhost`` names: browsers resolve them to the loopback address
themselves (RFC 6761), glibc without nss-myhostname does not. The
``localhost_names`` fixture makes this process resolve them the browsers'
way; nothing else about the connection is changed, and TLS still checks
the name sent (SNI and the certificate's names).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from infra_lib.chaos import Event, FaultLedger, LeftoverFault, recover, run_experiment
from infra_lib.chaos.gateway import DEAD_UPSTREAM, apply_gateway_fault, prepare_gateway_fault
from infra_lib.errors import GatewayConfigRejected
from infra_lib.gateway.apply import apply_config, prepare, reload, render_for
from infra_lib.gateway.layer import GatewayPaths, PublicUrls, is_enabled
from infra_lib.manifest import load_manifest
from infra_lib.observability.layer import LayerPaths
from infra_lib.stack.compose import Stack, StackPaths
from infra_lib.stack.settings import load_stack_settings
from tests.integration.conftest import ROOT, host_gateway_address, run_inv

pytestmark = pytest.mark.integration

READ_TIMEOUT = "2s"


def _stack(**overrides: str) -> Stack:
    paths = StackPaths.for_root(ROOT)
    settings = load_stack_settings(paths.env_file, environ=os.environ)
    if overrides:
        settings = settings.model_copy(update=overrides)
    env_dir = ROOT / "env" / settings.compose_project_name
    return Stack(settings, paths, extra_env_files=[LayerPaths(env_dir).secrets_env])


def _until(what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except Exception as exc:  # noqa: BLE001 - reported below if it never passes
            last = exc
        else:
            if value:
                return value
            last = value
        time.sleep(0.3)
    pytest.fail(f"{what} within {timeout:.0f} s; last: {last!r}")


# -- the upstream on the host ----------------------------------------------


class HostServer:
    """An aiohttp server in a thread: /health, /api/echo/..., /api/slow, /ws/echo."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _echo(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"path": request.path, "headers": dict(request.headers)},
        )

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(6)
        return web.json_response({"slow": True})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(f"echo:{message.data}")
        return ws

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/api/slow", self._slow)
        app.router.add_get("/ws/echo", self._ws)
        app.router.add_route("*", "/api/echo{tail:.*}", self._echo)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        # Only the address the gateway's container reaches the host at.
        site = web.TCPSite(self._runner, self.address, 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> HostServer:
        self._thread.start()
        assert self._ready.wait(10), "the host server did not start"
        return self

    def stop(self) -> None:
        async def _cleanup() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(_cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def _closed_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _manifest_text(port: int, dead_port: int, *, extra: bool = False) -> str:
    text = f"""
[project]
name = "collab"
bucket = "collab-dev-files"

[services.gw-echo]
http = {{ port = {port}, routes = ["/api/echo", "/api/slow"], websockets = ["/ws/echo"] }}

[services.gw-dead]
http = {{ port = {dead_port}, routes = ["/api/dead"] }}

[services.gw-missing]
http = {{ port = 8080, routes = ["/api/missing"], upstream = "gw-missing-container" }}
"""
    if extra:
        text += f"""
[services.gw-extra]
http = {{ port = {port}, routes = ["/api/echo-extra"], health = "/health" }}
"""
    return text


# -- fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway_on() -> Iterator[Stack]:
    was_on = is_enabled(_stack().settings)
    if not was_on:
        result = run_inv("up", "--with", "gateway")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stack = _stack()
    yield stack
    # The stack's own config back, from infra.toml.
    prepare(stack, load_manifest(ROOT / "infra.toml"), ROOT / "env" / stack.project_name)
    reload(stack)
    if not was_on:
        result = run_inv("up", "--without", "gateway", "--no-provision")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def paths(gateway_on: Stack) -> GatewayPaths:
    return GatewayPaths(ROOT / "env" / gateway_on.project_name)


@pytest.fixture(scope="module")
def tls(paths: GatewayPaths) -> ssl.SSLContext:
    """A client context that trusts the project's CA only."""
    return ssl.create_default_context(cafile=str(paths.ca_cert))


@pytest.fixture(scope="module")
def upstream(gateway_on: Stack) -> Iterator[HostServer]:
    server = HostServer(host_gateway_address(gateway_on, "gateway")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def manifest_file(
    tmp_path_factory: pytest.TempPathFactory, upstream: HostServer
) -> tuple[Path, int]:
    dead = _closed_port(upstream.address)
    path = tmp_path_factory.mktemp("gateway") / "infra.toml"
    path.write_text(_manifest_text(upstream.port, dead))
    return path, dead


@pytest.fixture(scope="module")
def routed(gateway_on: Stack, manifest_file: tuple[Path, int], tls: ssl.SSLContext) -> Stack:
    """The gateway serving the throwaway manifest, with a short read timeout."""
    stack = _stack(gateway_read_timeout=READ_TIMEOUT)
    prepare(stack, load_manifest(manifest_file[0]), ROOT / "env" / stack.project_name)
    assert reload(stack)
    base = PublicUrls.from_settings(stack.settings).base
    # Three answers in a row: during a graceful reload an old worker may
    # still take a new connection for a moment, with the old routes.
    _until(
        "the echo route",
        lambda: all(_get(f"{base}/api/echo/ready", tls)[0] == 200 for _ in range(3)),
    )
    return stack


@pytest.fixture
def localhost_names(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _get(
    url: str,
    context: ssl.SSLContext | None,
    *,
    method: str = "GET",
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, data=data, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=20, context=context) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _urls(stack: Stack) -> PublicUrls:
    return PublicUrls.from_settings(stack.settings)


# -- routes over HTTPS ---------------------------------------------------------


def test_route_answers_over_https_with_the_project_ca(routed: Stack, tls: ssl.SSLContext) -> None:
    status, headers, body = _get(f"{_urls(routed).base}/api/echo/boards/7?x=1", tls)
    assert status == 200
    seen = json.loads(body)
    assert seen["path"] == "/api/echo/boards/7"
    assert seen["headers"]["X-Forwarded-Proto"] == "https"
    # Security headers as a production gateway sends them; no HSTS on localhost.
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in headers
    # A sibling path is not the route's.
    assert _get(f"{_urls(routed).base}/api/echoX", tls)[0] == 404


def test_gateway_health(routed: Stack, tls: ssl.SSLContext) -> None:
    status, _, body = _get(f"{_urls(routed).base}/health", tls)
    assert (status, json.loads(body)) == (200, {"status": "ok"})


def test_a_client_without_the_ca_refuses_the_certificate(routed: Stack) -> None:
    with pytest.raises(urllib.error.URLError) as info:
        _get(f"{_urls(routed).base}/health", ssl.create_default_context())
    assert isinstance(info.value.reason, ssl.SSLCertVerificationError)


@pytest.mark.parametrize("name", ["localhost", "s3.localhost", "livekit.localhost"])
def test_the_certificate_covers_the_gateway_names(
    routed: Stack, tls: ssl.SSLContext, name: str
) -> None:
    port = routed.settings.gateway_https_port
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        tls.wrap_socket(raw, server_hostname=name) as conn,
    ):
        assert conn.version() in ("TLSv1.2", "TLSv1.3")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        tls.wrap_socket(raw, server_hostname="example.com")


def test_plain_http_redirects_to_https(routed: Stack) -> None:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as info:
        opener.open(f"{_urls(routed).http}/api/echo/x?y=1", timeout=10)
    assert info.value.code == 301
    assert info.value.headers["Location"] == f"{_urls(routed).base}/api/echo/x?y=1"


def test_the_request_size_limit_applies(routed: Stack, tls: ssl.SSLContext) -> None:
    too_big = b"x" * (11 * 1024 * 1024)  # GATEWAY_MAX_BODY_SIZE=10m
    status, _, _ = _get(f"{_urls(routed).base}/api/echo/upload", tls, method="POST", data=too_big)
    assert status == 413


# -- failures ------------------------------------------------------------------


def test_a_dead_upstream_gives_a_502_naming_service_and_route(
    routed: Stack, tls: ssl.SSLContext, manifest_file: tuple[Path, int]
) -> None:
    status, headers, body = _get(f"{_urls(routed).base}/api/dead/x", tls)
    assert status == 502
    assert headers["Content-Type"] == "application/json"
    answer = json.loads(body)
    assert (answer["service"], answer["route"]) == ("gw-dead", "/api/dead")
    # Nothing of the inside: no address, no port, no server name.
    text = body.decode()
    assert str(manifest_file[1]) not in text and "docker" not in text and "nginx" not in text
    # The gateway's log names the route and the upstream it tried.
    logs = _until(
        "the 502 in the gateway's log",
        lambda: [
            line
            for line in routed.logs("gateway", tail=200).splitlines()
            if "service=gw-dead" in line and f":{manifest_file[1]}" in line
        ],
    )
    assert " 502 " in logs[-1]


def test_a_missing_container_upstream_gives_a_502_not_a_dead_gateway(
    routed: Stack, tls: ssl.SSLContext
) -> None:
    status, _, body = _get(f"{_urls(routed).base}/api/missing", tls)
    assert status == 502 and json.loads(body)["service"] == "gw-missing"


def test_a_slow_upstream_times_out_with_a_504(routed: Stack, tls: ssl.SSLContext) -> None:
    start = time.monotonic()
    status, _, body = _get(f"{_urls(routed).base}/api/slow", tls)
    assert status == 504
    assert json.loads(body)["route"] == "/api/slow"
    assert time.monotonic() - start < 5.5  # the 2 s limit, not the upstream's 6 s


# -- the gateway-502 experiment ------------------------------------------------------


def test_the_gateway_502_experiment_names_the_service_and_rolls_back(
    routed: Stack,
    tls: ssl.SSLContext,
    paths: GatewayPaths,
    manifest_file: tuple[Path, int],
    tmp_path: Path,
) -> None:
    base = _urls(routed).base
    before = paths.config_file.read_text()
    during: list[tuple[int, bytes]] = []
    others: list[int] = []

    def on_event(event: Event) -> None:
        if event.kind == "probe_failed":
            status, _, body = _get(f"{base}/api/echo/x", tls)
            during.append((status, body))
            # The service's other route, and the gateway itself, are untouched.
            others.extend([_get(f"{base}/health", tls)[0], _get(f"{base}/api/dead", tls)[0]])

    ledger = FaultLedger(tmp_path / "active.json")
    report = run_experiment(
        routed,
        ledger,
        "gateway-502",
        "gw-echo",
        duration=2.0,
        manifest=load_manifest(manifest_file[0]),
        on_event=on_event,
    )
    assert report.recovered, report.events
    failed = report.first("probe_failed")
    assert failed is not None and '"service":"gw-echo"' in failed.detail, report.events
    assert during and during[0][0] == 502
    answer = json.loads(during[0][1])
    assert (answer["service"], answer["route"]) == ("gw-echo", "/api/echo")
    assert others == [200, 502]  # /api/dead was dead before the fault
    assert paths.config_file.read_text() == before
    assert _get(f"{base}/api/echo/after", tls)[0] == 200
    assert ledger.read() is None
    # The gateway's log names the route and the address the fault sent it to.
    _until(
        "the fault's 502 in the gateway's log",
        lambda: [
            line
            for line in routed.logs("gateway", tail=300).splitlines()
            if "service=gw-echo" in line and DEAD_UPSTREAM in line and " 502 " in line
        ],
    )


def test_a_gateway_fault_left_by_a_crashed_run_is_undone_by_recover(
    routed: Stack,
    tls: ssl.SSLContext,
    paths: GatewayPaths,
    manifest_file: tuple[Path, int],
    tmp_path: Path,
) -> None:
    base = _urls(routed).base
    before = paths.config_file.read_text()
    manifest = load_manifest(manifest_file[0])
    undo = prepare_gateway_fault(routed, manifest, "gw-echo", timeout=5.0)
    ledger = FaultLedger(tmp_path / "active.json")
    container = routed.container("gateway")
    ledger.record(
        LeftoverFault(
            "gateway-502", "gw-echo", str(container.id), routed.project_name, "-", 1, undo
        )
    )
    # What a run killed mid-experiment leaves: the fault on, the ledger written.
    apply_gateway_fault(routed, undo)
    _until("the fault", lambda: _get(f"{base}/api/echo/x", tls)[0] == 502)
    message = recover(routed, ledger)
    assert message is not None and "from before the fault is back" in message
    assert paths.config_file.read_text() == before
    _until("the route back", lambda: _get(f"{base}/api/echo/x", tls)[0] == 200)
    assert ledger.read() is None


def test_inv_routes_shows_which_upstreams_answer(
    routed: Stack, manifest_file: tuple[Path, int]
) -> None:
    result = run_inv("routes", "--manifest", str(manifest_file[0]))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert "up" in rows[f"{_urls(routed).base}/api/echo"]
    assert "down" in rows[f"{_urls(routed).base}/api/dead"]
    assert "up" in rows[_urls(routed).s3]


# -- WebSockets and reloads ------------------------------------------------------


def test_websocket_upgrades_and_echoes(routed: Stack, tls: ssl.SSLContext) -> None:
    async def talk() -> str:
        async with aiohttp.ClientSession() as session:
            url = f"{_urls(routed).base.replace('https', 'wss', 1)}/ws/echo"
            async with session.ws_connect(url, ssl=tls) as ws:
                await ws.send_str("hello")
                return str((await ws.receive(timeout=10)).data)

    assert asyncio.run(talk()) == "echo:hello"


def test_a_manifest_change_is_applied_without_dropping_an_open_websocket(
    routed: Stack, tls: ssl.SSLContext, upstream: HostServer, manifest_file: tuple[Path, int]
) -> None:
    base = _urls(routed).base
    changed = manifest_file[0].with_name("changed.toml")
    changed.write_text(_manifest_text(upstream.port, manifest_file[1], extra=True))
    assert _get(f"{base}/api/echo-extra", tls)[0] == 404

    async def scenario() -> list[str]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{base.replace('https', 'wss', 1)}/ws/echo", ssl=tls) as ws,
        ):
            await ws.send_str("before")
            got = [str((await ws.receive(timeout=10)).data)]
            prepared = await asyncio.to_thread(
                prepare, routed, load_manifest(changed), ROOT / "env" / routed.project_name
            )
            assert prepared.config_changed
            assert await asyncio.to_thread(reload, routed)
            await asyncio.to_thread(
                _until,
                "the new route",
                lambda: _get(f"{base}/api/echo-extra", tls)[0] == 200,
            )
            await ws.send_str("after")
            got.append(str((await ws.receive(timeout=10)).data))
            return got

    assert asyncio.run(scenario()) == ["echo:before", "echo:after"]


def test_a_config_nginx_refuses_never_reaches_the_running_gateway(
    routed: Stack, tls: ssl.SSLContext, paths: GatewayPaths, manifest_file: tuple[Path, int]
) -> None:
    before = paths.config_file.read_bytes()
    good = render_for(routed, load_manifest(manifest_file[0]))
    # What a bad route config looks like to nginx: a directive it does not know.
    bad = good.replace("proxy_http_version 1.1;", "proxy_http_version 1.1; proxy_frobnicate on;", 1)
    with pytest.raises(GatewayConfigRejected, match="proxy_frobnicate"):
        apply_config(routed, paths, bad)
    assert paths.config_file.read_bytes() == before
    assert paths.check_dirs() == []
    assert reload(routed)
    assert _get(f"{_urls(routed).base}/api/echo/still", tls)[0] == 200


# -- storage and LiveKit behind the gateway ---------------------------------------


@pytest.mark.parametrize("backend", ["minio", "boto3"])
def test_presigned_put_and_get_through_the_s3_name(
    routed: Stack, tls: ssl.SSLContext, paths: GatewayPaths, backend: str, localhost_names: None
) -> None:
    from infra_lib.storage.config import S3Config
    from infra_lib.storage.presign import Presigner

    direct = S3Config.from_stack(routed.settings)
    config = S3Config(
        endpoint=direct.endpoint,
        public_endpoint=_urls(routed).s3,
        access_key=direct.access_key,
        secret_key=direct.secret_key,
        ca_file=str(paths.ca_cert),
    )
    bucket = load_manifest(ROOT / "infra.toml").project.bucket_name
    key = f"gateway-test/{uuid.uuid4().hex}/{backend}.bin"
    body = os.urandom(256 * 1024)
    presigner = Presigner(config, backend=backend)  # type: ignore[arg-type]
    put = presigner.put_url(
        bucket, key, content_type="application/octet-stream", expires=timedelta(minutes=5)
    )
    assert put.startswith(_urls(routed).s3 + "/")
    try:
        status, _, answer = _get(
            put, tls, method="PUT", data=body, headers={"Content-Type": "application/octet-stream"}
        )
        assert status == 200, answer
        status, _, got = _get(presigner.get_url(bucket, key, expires=timedelta(minutes=5)), tls)
        assert status == 200 and got == body
    finally:
        direct.client().remove_object(bucket, key)


def test_livekit_signalling_through_wss(
    routed: Stack, tls: ssl.SSLContext, localhost_names: None
) -> None:
    from livekit.protocol import rtc as rtc_proto

    from infra_lib.livekit.config import LiveKitConfig
    from infra_lib.livekit.tokens import TokenFactory

    direct = LiveKitConfig.from_stack(routed.settings)
    config = LiveKitConfig(
        url=_urls(routed).livekit,
        api_url=direct.api_url,
        api_key=direct.api_key,
        api_secret=direct.api_secret,
    )
    minted = TokenFactory(config).join_token(f"gw-{uuid.uuid4().hex[:8]}", "gw-tester")
    assert minted.url == _urls(routed).livekit

    async def join() -> rtc_proto.SignalResponse:
        # The first message the SFU sends a participant that may join.
        async with aiohttp.ClientSession() as session:
            url = f"{minted.url}/rtc?access_token={minted.token}&protocol=15&auto_subscribe=1"
            async with session.ws_connect(url, ssl=tls) as ws:
                message = await ws.receive(timeout=15)
                assert message.type == aiohttp.WSMsgType.BINARY, message
                response = rtc_proto.SignalResponse()
                response.ParseFromString(message.data)
                return response

    response = asyncio.run(join())
    assert response.WhichOneof("message") == "join"
    assert response.join.participant.identity == "gw-tester"


_HOSTS = Path("/etc/hosts")
_HOSTS_MARK = "# infra-lib gateway test"


@pytest.fixture
def system_names(routed: Stack, paths: GatewayPaths, tmp_path: Path) -> Iterator[None]:
    """The machine resolves ``livekit.<host>`` and trusts the project's CA, as a user's would.

    The LiveKit SDK is native code: it resolves names through the C library
    and reads the system trust store itself, so it is given what ``inv trust``
    and a resolver that knows ``*.localhost`` (systemd-resolved, browsers)
    give a user: a marked ``/etc/hosts`` line, removed afterwards, and a CA
    bundle holding the system's roots and the project's CA (``SSL_CERT_FILE``).
    """
    assert os.access(_HOSTS, os.W_OK), f"{_HOSTS} must be writable (run the tests as root)"
    name = urllib.parse.urlsplit(_urls(routed).livekit).hostname
    bundle = tmp_path / "ca-bundle.pem"
    system = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    bundle.write_text(system.read_text() + paths.ca_cert.read_text())
    with _HOSTS.open("a") as hosts:
        hosts.write(f"127.0.0.1 {name} {_HOSTS_MARK}\n")
    old = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(bundle)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = old
        kept = [x for x in _HOSTS.read_text().splitlines(keepends=True) if _HOSTS_MARK not in x]
        _HOSTS.write_text("".join(kept))


def test_a_participant_joins_with_the_sdk_through_wss(routed: Stack, system_names: None) -> None:
    from livekit import rtc

    from infra_lib.livekit.config import LiveKitConfig
    from infra_lib.livekit.rooms import RoomService
    from infra_lib.livekit.tokens import TokenFactory

    direct = LiveKitConfig.from_stack(routed.settings)
    public = LiveKitConfig(
        url=_urls(routed).livekit,
        api_url=direct.api_url,
        api_key=direct.api_key,
        api_secret=direct.api_secret,
    )
    room_name = f"gw-sdk-{uuid.uuid4().hex[:8]}"
    minted = TokenFactory(public).join_token(room_name, "gw-sdk")
    assert minted.url.startswith("wss://")

    async def join() -> None:
        room = rtc.Room()
        await asyncio.wait_for(room.connect(minted.url, minted.token), timeout=30)
        try:
            assert room.local_participant.identity == "gw-sdk"
            with RoomService(direct) as rooms:
                listed = await asyncio.to_thread(rooms.list_participants, room_name)
            assert [p.identity for p in listed] == ["gw-sdk"]
        finally:
            await room.disconnect()
            with RoomService(direct) as rooms:
                await asyncio.to_thread(rooms.delete_room, room_name)

    asyncio.run(join())


# -- files -----------------------------------------------------------------------


def test_certificate_and_key_files_are_private(paths: GatewayPaths) -> None:
    for folder in (paths.root, paths.tls_dir, paths.ca_dir):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for file in (paths.cert_file, paths.key_file, paths.ca_cert, paths.ca_key, paths.config_file):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


def test_the_ca_key_is_not_mounted_into_the_gateway(gateway_on: Stack) -> None:
    listing = gateway_on.docker.compose.execute(
        "gateway", ["ls", "-R", "/etc/nginx/infra"], tty=False
    )
    assert "ca-key.pem" not in str(listing) and "key.pem" in str(listing)


def test_concurrent_applies_take_turns(
    routed: Stack, paths: GatewayPaths, manifest_file: tuple[Path, int]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    text = render_for(routed, load_manifest(manifest_file[0]))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: apply_config(routed, paths, text), range(4)))
    assert paths.config_file.read_text() == text
    assert paths.check_dirs() == []
