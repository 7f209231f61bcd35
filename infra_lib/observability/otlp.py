"""Where a team's service sends OTLP, as the keys provisioning writes to its env file.

The collector (``otelcol`` in ``compose/observability.yaml``) takes OTLP over
gRPC (4317) and HTTP (4318). A service gets the HTTP endpoint with
``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf``: that is the protocol every
OpenTelemetry SDK supports (the Java agent's default; Python's and Go's
exporters for it take the same variables), so one endpoint works for all.

Which address a service gets follows the manifest's ``metrics.upstream``, as
for scraping: a process on the developer's host (the default) reaches the
published port on ``INFRA_PUBLIC_HOST``; a service that runs as a Compose
service on the stack's networks reaches ``otelcol`` by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra_lib.manifest import ServiceManifest
from infra_lib.stack.settings import StackSettings

__all__ = ["COLLECTOR_SERVICE", "OTEL_KEYS_PREFIX", "OtlpEndpoints"]

#: Every env-file key this module writes starts with it.
OTEL_KEYS_PREFIX = "OTEL_"
#: The collector's Compose service name (compose/observability.yaml).
COLLECTOR_SERVICE = "otelcol"
#: OTLP/HTTP inside the container.
_COLLECTOR_HTTP_PORT = 4318


@dataclass(frozen=True, slots=True)
class OtlpEndpoints:
    """The collector's OTLP/HTTP base URLs from the host and from the stack's networks."""

    host_url: str
    network_url: str = f"http://{COLLECTOR_SERVICE}:{_COLLECTOR_HTTP_PORT}"

    @classmethod
    def from_stack(cls, settings: StackSettings) -> OtlpEndpoints:
        """The compose stack's collector (``OTLP_HTTP_PORT`` on ``INFRA_PUBLIC_HOST``)."""
        return cls(f"http://{settings.url_host}:{settings.otlp_http_port}")

    def url_for(self, service: ServiceManifest) -> str:
        """The base URL ``service`` should use (the SDK appends ``/v1/traces`` etc.)."""
        metrics = service.metrics
        if metrics is not None and metrics.upstream != "host":
            return self.network_url
        return self.host_url

    def env_for(self, service: ServiceManifest) -> dict[str, str]:
        """The ``OTEL_*`` keys of ``service``'s env file."""
        return {
            "OTEL_SERVICE_NAME": service.name,
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.url_for(service),
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }
