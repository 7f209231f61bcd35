"""The ``inv routes`` table: each route, its upstream, and whether it answers now.

Health paths are asked from inside the gateway's container, so the answer
is what the gateway itself sees (a host process listening only on
127.0.0.1, for one, answers the developer but not the gateway).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from infra_lib.gateway.layer import SERVICE, PublicUrls
from infra_lib.gateway.routes import Route, VirtualHost, build_routes, stack_hosts
from infra_lib.manifest import Manifest

if TYPE_CHECKING:
    from infra_lib.stack.compose import Stack

__all__ = ["RouteRow", "route_rows"]

# One shell in the container for every check; the URLs are its arguments,
# never part of the script. `timeout` bounds a hanging upstream for both
# busybox's and GNU wget (which retries on timeouts).
_CHECK_SCRIPT = (
    'for u; do if timeout 5 wget -q -T 3 -O /dev/null "$u" 2>/dev/null; '
    'then echo "up $u"; else echo "down $u"; fi; done'
)


@dataclass(frozen=True, slots=True)
class RouteRow:
    """One line of ``inv routes``."""

    path: str
    kind: str
    service: str
    upstream: str
    #: ``up``, ``down``, ``no health path`` or ``gateway not running``.
    health: str
    health_url: str

    @property
    def ok(self) -> bool:
        """Whether the upstream answered its health path."""
        return self.health == "up"


def _health_url(upstream: str, health: str | None) -> str:
    return f"http://{upstream}{health}" if health else ""


def _check(stack: Stack, urls: Sequence[str]) -> dict[str, str] | None:
    from python_on_whales.exceptions import DockerException

    if not urls:
        return {}
    running = any(s.name == SERVICE and s.state == "running" for s in stack.status([SERVICE]))
    if not running:
        return None
    try:
        output = stack.docker.compose.execute(
            SERVICE, ["sh", "-c", _CHECK_SCRIPT, "sh", *urls], tty=False
        )
    except DockerException:
        return None
    found: dict[str, str] = {}
    for line in str(output or "").splitlines():
        state, _, url = line.partition(" ")
        found[url] = state
    return found


def route_rows(stack: Stack, manifest: Manifest, *, check: bool = True) -> list[RouteRow]:
    """The gateway's routes, then MinIO's and LiveKit's names, with their health now."""
    routes: list[Route | VirtualHost] = [*build_routes(manifest), *stack_hosts()]
    urls = PublicUrls.from_settings(stack.settings)

    def url_of(item: Route | VirtualHost) -> str:
        if isinstance(item, Route):
            return _health_url(item.upstream, item.health)
        # MinIO's readiness path; LiveKit answers 200 on /.
        return f"http://{item.upstream}" + ("/minio/health/live" if item.kind == "s3" else "/")

    wanted = sorted({url_of(r) for r in routes if url_of(r)})
    states = _check(stack, wanted) if check else None
    rows = []
    for item in routes:
        url = url_of(item)
        if not url:
            health = "no health path"
        elif states is None:
            health = "gateway not running" if check else "not checked"
        else:
            health = states.get(url, "down")
        if isinstance(item, Route):
            path = f"{urls.base}{item.path}"
            if item.kind == "websocket":
                path = path.replace("https://", "wss://", 1)
            rows.append(RouteRow(path, item.kind, item.service, item.upstream, health, url))
        else:
            public = urls.s3 if item.kind == "s3" else urls.livekit
            rows.append(RouteRow(public, item.kind, item.service, item.upstream, health, url))
    return rows
