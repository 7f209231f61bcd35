"""The gateway's route table: the manifest's ``http`` entries, plus MinIO and LiveKit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from infra_lib.manifest import Manifest

__all__ = ["HOST_ALIAS", "Route", "VirtualHost", "build_routes", "stack_hosts"]

#: How the gateway's container reaches a process on the developer's machine
#: (``extra_hosts: host-gateway`` in compose/gateway.yaml).
HOST_ALIAS = "host.docker.internal"


@dataclass(frozen=True, slots=True)
class Route:
    """One path prefix and the upstream it is proxied to."""

    path: str
    service: str
    #: ``host:port`` as the gateway's container reaches it.
    upstream: str
    kind: Literal["http", "websocket"]
    #: The upstream's own health path (checked by ``inv routes``), if any.
    health: str | None
    #: A process on the developer's machine rather than a container.
    on_host: bool

    @property
    def answers_json(self) -> bool:
        """Whether the gateway's own error pages are JSON here (API and WebSocket paths)."""
        return self.path.startswith(("/api", "/ws")) or self.kind == "websocket"


@dataclass(frozen=True, slots=True)
class VirtualHost:
    """A name under the gateway's host that leads to one stack service (``s3.<host>``)."""

    prefix: str
    service: str
    upstream: str
    kind: Literal["s3", "websocket"]


def build_routes(manifest: Manifest) -> tuple[Route, ...]:
    """Every route the manifest declares, the most specific paths first.

    The manifest already refused overlapping paths, so the order only makes
    the generated config and ``inv routes`` easy to read.
    """
    routes: list[Route] = []
    for service in manifest:
        http = service.http
        if http is None:
            continue
        on_host = http.upstream == "host"
        upstream = f"{HOST_ALIAS if on_host else http.upstream}:{http.port}"
        for kind, paths in (("http", http.routes), ("websocket", http.websockets)):
            for path in paths:
                routes.append(
                    Route(path, service.name, upstream, kind, http.health, on_host)  # type: ignore[arg-type]
                )
    return tuple(sorted(routes, key=lambda r: (r.path == "/", r.path)))


def stack_hosts() -> tuple[VirtualHost, ...]:
    """MinIO at ``s3.<host>`` and LiveKit's signalling at ``livekit.<host>``."""
    return (
        VirtualHost("s3", "minio", "minio:9000", "s3"),
        VirtualHost("livekit", "livekit", "livekit:7880", "websocket"),
    )
