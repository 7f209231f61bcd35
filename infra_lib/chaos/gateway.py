"""The gateway fault: a service's routes lose their upstream, and the gateway answers 502.

The fault is a config, not a stopped container: the gateway gets its
normal config from the manifest with every upstream of one service replaced
by an address where nothing listens (the discard port on the gateway's own
loopback). The candidate passes ``nginx -t`` before it is applied and is
loaded by nginx's graceful reload, as every gateway config is, so other
routes and open connections are not disturbed. The upstream itself keeps
running: what the experiment shows is the gateway's side, its named 502
and its log line, and that clients get the route back after the rollback.

The rollback puts back the config the gateway ran before the fault, unless
someone applied a new one meanwhile (``inv provision``, ``inv gateway
reload``): that one is newer than both and is left alone.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra_lib.errors import ConfigError, ServiceUnavailable, StackError
from infra_lib.gateway.apply import apply_config, reload
from infra_lib.gateway.layer import SERVICE, GatewayPaths, require_enabled
from infra_lib.gateway.nginx import GatewayOptions, render_config
from infra_lib.gateway.routes import Route, VirtualHost, build_routes, stack_hosts

if TYPE_CHECKING:
    from infra_lib.manifest import Manifest
    from infra_lib.stack.compose import Stack
    from infra_lib.stack.settings import StackSettings

__all__ = [
    "DEAD_UPSTREAM",
    "GATEWAY_FAULTS",
    "GatewayTarget",
    "apply_gateway_fault",
    "gateway_target",
    "prepare_gateway_fault",
    "probe_through_gateway",
    "undo_gateway_fault",
]

GATEWAY_FAULTS: dict[str, str] = {
    "gateway-502": "the gateway's routes to the service lead nowhere (config checked with "
    "nginx -t, reloaded gracefully); clients get the gateway's 502 naming the service",
}

#: Inside the gateway's container nothing listens on the discard port of its
#: own loopback: a connection there is refused at once, so the answer is a
#: 502 and not a 504 after the connect timeout.
DEAD_UPSTREAM = "127.0.0.1:9"


@dataclass(frozen=True, slots=True)
class GatewayTarget:
    """Where a client reaches one service through the gateway: a name and a path."""

    service: str
    #: The TLS name (SNI and Host): the gateway's host, or ``s3.``/``livekit.`` under it.
    host: str
    path: str
    #: The public paths or names that lead to the service.
    routes: tuple[str, ...]


def _routed_services(manifest: Manifest | None) -> dict[str, list[Route]]:
    found: dict[str, list[Route]] = {}
    for route in build_routes(manifest) if manifest is not None else ():
        found.setdefault(route.service, []).append(route)
    return found


def gateway_target(
    settings: StackSettings, manifest: Manifest | None, service: str
) -> GatewayTarget:
    """How the probe reaches ``service`` through the gateway.

    A manifest service is asked on its first HTTP route (or WebSocket path:
    its own health path is not routed through the gateway); ``minio`` and
    ``livekit`` on their names.
    """
    host = settings.gateway_host
    for vhost in stack_hosts():
        if vhost.service == service:
            path = "/minio/health/live" if vhost.kind == "s3" else "/"
            name = f"{vhost.prefix}.{host}"
            return GatewayTarget(service, name, path, (name,))
    routed = _routed_services(manifest)
    routes = routed.get(service)
    if not routes:
        known = [*sorted(routed), *(v.service for v in stack_hosts())]
        raise ConfigError(
            f"no route of the gateway leads to {service!r}; gateway-502 takes a service "
            f"with `http` routes in the manifest, or minio or livekit: {', '.join(known)}"
        )
    plain = [r for r in routes if r.kind == "http"]
    path = (plain or routes)[0].path
    return GatewayTarget(service, host, path, tuple(r.path for r in routes))


class _NamedHTTPS(http.client.HTTPSConnection):
    """HTTPS to ``address``, speaking TLS for ``host``: SNI and Host as a browser sends them.

    ``*.localhost`` names do not resolve everywhere (glibc without
    nss-myhostname); the gateway is on this host's published port anyway.
    """

    def __init__(
        self, host: str, address: str, port: int, context: ssl.SSLContext, timeout: float
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


def probe_through_gateway(
    settings: StackSettings, ca_file: Path, target: GatewayTarget, *, timeout: float
) -> None:
    """Ask ``target`` through the gateway; raise :class:`ServiceUnavailable` on a 5xx.

    Any other answer is the service answering, a 404 or 401 of its own included.
    The certificate is checked against the project's CA, never skipped.
    """
    context = ssl.create_default_context(cafile=str(ca_file))
    address = settings.url_host.strip("[]")
    connection = _NamedHTTPS(target.host, address, settings.gateway_https_port, context, timeout)
    url = f"https://{target.host}:{settings.gateway_https_port}{target.path}"
    try:
        connection.request("GET", target.path, headers={"Accept": "application/json"})
        response = connection.getresponse()
        body = response.read(300).decode(errors="replace").strip()
    except (OSError, http.client.HTTPException) as exc:
        raise ServiceUnavailable(
            f"the gateway does not answer {url} ({exc})", service=SERVICE
        ) from exc
    finally:
        connection.close()
    if response.status >= 500:
        raise ServiceUnavailable(
            f"the gateway answered {response.status} for {url}: {body}", service=target.service
        )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _broken_config(stack: Stack, manifest: Manifest | None, service: str) -> str:
    routes = [
        replace(r, upstream=DEAD_UPSTREAM) if r.service == service else r
        for r in (build_routes(manifest) if manifest is not None else ())
    ]
    vhosts: list[VirtualHost] = [
        replace(v, upstream=DEAD_UPSTREAM) if v.service == service else v for v in stack_hosts()
    ]
    return render_config(routes, vhosts, GatewayOptions.from_settings(stack.settings))


def gateway_paths(stack: Stack) -> GatewayPaths:
    """The gateway's files, where ``compose/gateway.yaml`` mounts them from."""
    return GatewayPaths(stack.paths.root / "env" / stack.project_name)


def prepare_gateway_fault(
    stack: Stack, manifest: Manifest | None, service: str, *, timeout: float
) -> dict[str, Any]:
    """Check the gateway runs and routes to ``service``, and that it answers now.

    Returns what the ledger keeps for the rollback: the config the gateway
    runs now and the fault's config (which the apply step loads). Refused
    when the route fails before the fault: the timeline would show nothing.
    """
    require_enabled(stack.settings)
    target = gateway_target(stack.settings, manifest, service)
    paths = gateway_paths(stack)
    if not paths.config_file.is_file():
        raise StackError(
            f"the gateway has no config at {paths.config_file}: run `inv up --with gateway`"
        )
    try:
        probe_through_gateway(stack.settings, paths.ca_cert, target, timeout=timeout)
    except ServiceUnavailable as exc:
        raise StackError(
            f"{service} does not answer through the gateway before the fault ({exc}); start "
            "it first (`inv routes` shows each route's upstream), or the experiment shows "
            "nothing"
        ) from None
    broken = _broken_config(stack, manifest, service)
    return {
        "config": paths.config_file.read_text(encoding="utf-8"),
        "broken": broken,
        "broken_sha256": _digest(broken),
        "routes": list(target.routes),
    }


def apply_gateway_fault(stack: Stack, undo: dict[str, Any]) -> str:
    """Load the fault's config (checked by ``nginx -t`` first); say what changed."""
    apply_config(stack, gateway_paths(stack), undo["broken"])
    if not reload(stack):
        raise StackError("the gateway stopped before the fault could be loaded")
    routes = undo["routes"]
    verb = "leads" if len(routes) == 1 else "lead"
    return (
        f"{', '.join(routes)} now {verb} to {DEAD_UPSTREAM}, where nothing listens "
        "(passed nginx -t, reloaded)"
    )


def undo_gateway_fault(stack: Stack, undo: dict[str, Any]) -> str:
    """Put back the config from before the fault, unless a newer one replaced the fault's."""
    paths = gateway_paths(stack)
    try:
        current = paths.config_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = ""
    if current == undo["config"]:
        return "the gateway still has the config from before the fault"
    if _digest(current) != undo["broken_sha256"]:
        return "the gateway's config was replaced since the fault; the newer one is kept"
    apply_config(stack, paths, undo["config"])
    if reload(stack):
        return "the config from before the fault is back (reloaded)"
    return f"the config from before the fault is back; the {SERVICE} reads it when it starts"
