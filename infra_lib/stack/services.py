"""What each compose service publishes, and which ``.env`` variable moves it.

This mirrors ``compose/*.yaml``; a unit test checks the two agree, so a port
added to a compose file without a line here fails the suite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from infra_lib.stack.settings import StackSettings

__all__ = [
    "PROFILE_SERVICES",
    "SERVICES",
    "SERVICE_NAMES",
    "PublishedPort",
    "ServiceSpec",
    "service_spec",
    "services_for",
]

Protocol = Literal["tcp", "udp"]


@dataclass(frozen=True, slots=True)
class PublishedPort:
    """One host port (or inclusive range) a service publishes.

    ``variable`` is the ``.env`` name of the port; for a range it is the start
    variable and ``end_variable`` the end.
    """

    variable: str
    protocol: Protocol
    end_variable: str | None = None

    def host_ports(self, settings: StackSettings) -> range:
        """The host port numbers this entry covers under ``settings``."""
        start = int(getattr(settings, self.variable.lower()))
        if self.end_variable is None:
            return range(start, start + 1)
        end = int(getattr(settings, self.end_variable.lower()))
        return range(start, end + 1)

    def describe(self) -> str:
        """The variable(s) a user edits to move this port."""
        if self.end_variable is None:
            return self.variable
        return f"{self.variable}/{self.end_variable}"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A compose service: its name, published ports and client endpoint."""

    name: str
    ports: tuple[PublishedPort, ...]
    endpoint_template: str
    #: The Compose profile the service belongs to; ``None``: always on.
    profile: str | None = None

    def endpoint(self, settings: StackSettings) -> str:
        """Where a client on this host reaches the service."""
        values = {name: getattr(settings, name) for name in type(settings).model_fields}
        values["url_host"] = settings.url_host
        return self.endpoint_template.format(**values)


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        "postgres",
        (PublishedPort("POSTGRES_PORT", "tcp"),),
        "postgresql://{url_host}:{postgres_port}",
    ),
    ServiceSpec(
        "redis",
        (PublishedPort("REDIS_PORT", "tcp"),),
        "redis://{url_host}:{redis_port}",
    ),
    ServiceSpec(
        "minio",
        (PublishedPort("MINIO_API_PORT", "tcp"), PublishedPort("MINIO_CONSOLE_PORT", "tcp")),
        "http://{url_host}:{minio_api_port} (console :{minio_console_port})",
    ),
    ServiceSpec(
        "livekit",
        (
            PublishedPort("LIVEKIT_HTTP_PORT", "tcp"),
            PublishedPort("LIVEKIT_TCP_PORT", "tcp"),
            PublishedPort("LIVEKIT_RTC_PORT_START", "udp", "LIVEKIT_RTC_PORT_END"),
        ),
        "ws://{url_host}:{livekit_http_port}",
    ),
    ServiceSpec(
        "coturn",
        (
            PublishedPort("TURN_PORT", "udp"),
            PublishedPort("TURN_PORT", "tcp"),
            PublishedPort("TURN_RELAY_PORT_START", "udp", "TURN_RELAY_PORT_END"),
        ),
        "turn:{url_host}:{turn_port}",
    ),
)

SERVICE_NAMES: tuple[str, ...] = tuple(spec.name for spec in SERVICES)

#: Services that run only when their Compose profile is switched on
#: (``INFRA_PROFILES``), by profile. They publish nothing unless listed.
PROFILE_SERVICES: dict[str, tuple[ServiceSpec, ...]] = {
    "observability": (
        ServiceSpec(
            "victoriametrics",
            (PublishedPort("METRICS_PORT", "tcp"),),
            "http://{url_host}:{metrics_port}/vmui",
            profile="observability",
        ),
        ServiceSpec("vmalert", (), "(via :{metrics_port}/api/v1/alerts)", "observability"),
        ServiceSpec("postgres-exporter", (), "(internal :9187)", "observability"),
        ServiceSpec("redis-exporter", (), "(internal :9121)", "observability"),
        ServiceSpec("node-exporter", (), "(internal :9100)", "observability"),
        ServiceSpec(
            "victorialogs",
            (PublishedPort("LOGS_PORT", "tcp"),),
            "http://{url_host}:{logs_port}/select/vmui",
            profile="observability",
        ),
        ServiceSpec(
            "jaeger",
            (PublishedPort("TRACES_UI_PORT", "tcp"),),
            "http://{url_host}:{traces_ui_port}",
            profile="observability",
        ),
        ServiceSpec(
            "otelcol",
            (PublishedPort("OTLP_GRPC_PORT", "tcp"), PublishedPort("OTLP_HTTP_PORT", "tcp")),
            "http://{url_host}:{otlp_http_port} (OTLP; gRPC :{otlp_grpc_port})",
            profile="observability",
        ),
    ),
    "grafana": (
        ServiceSpec(
            "grafana",
            (PublishedPort("GRAFANA_PORT", "tcp"),),
            "http://{url_host}:{grafana_port}",
            profile="grafana",
        ),
    ),
    "chaos": (
        ServiceSpec(
            "toxiproxy",
            (
                PublishedPort("TOXIPROXY_API_PORT", "tcp"),
                PublishedPort("TOXIPROXY_POSTGRES_PORT", "tcp"),
                PublishedPort("TOXIPROXY_REDIS_PORT", "tcp"),
                PublishedPort("TOXIPROXY_MINIO_PORT", "tcp"),
            ),
            "http://127.0.0.1:{toxiproxy_api_port}/proxies (postgres :{toxiproxy_postgres_port}, "
            "redis :{toxiproxy_redis_port}, minio :{toxiproxy_minio_port})",
            profile="chaos",
        ),
    ),
    "gateway": (
        ServiceSpec(
            "gateway",
            (PublishedPort("GATEWAY_HTTP_PORT", "tcp"), PublishedPort("GATEWAY_HTTPS_PORT", "tcp")),
            "https://{gateway_host}:{gateway_https_port}",
            profile="gateway",
        ),
    ),
}


def services_for(profiles: tuple[str, ...] | list[str]) -> tuple[ServiceSpec, ...]:
    """The core services, then those of each switched-on profile."""
    extra = [spec for name in profiles for spec in PROFILE_SERVICES.get(name, ())]
    return (*SERVICES, *extra)


def service_spec(name: str) -> ServiceSpec:
    """The spec of service ``name``; raises ConfigError for an unknown name."""
    from infra_lib.errors import ConfigError

    for spec in services_for(list(PROFILE_SERVICES)):
        if spec.name == name:
            return spec
    raise ConfigError(f"unknown service {name!r}; known services: {', '.join(SERVICE_NAMES)}")
