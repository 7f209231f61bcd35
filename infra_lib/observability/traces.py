"""The trace store (Jaeger's query API) and a span sent over OTLP/HTTP for checks.

:func:`send_span` builds the OTLP/JSON body by hand (the protocol's JSON
encoding), so infra_lib needs no OpenTelemetry SDK; the team's services use
their SDKs (docs/observability.md).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from infra_lib.errors import ServiceUnavailable
from infra_lib.observability.http import NotFound, request
from infra_lib.stack.settings import StackSettings

__all__ = ["TraceStore", "send_span"]


def send_span(otlp_http_url: str, *, service_name: str, name: str, timeout: float = 5.0) -> str:
    """Export one finished span to ``otlp_http_url`` (``/v1/traces``); its trace id (hex)."""
    trace_id = secrets.token_hex(16)
    now = time.time_ns()
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": service_name}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "infra_lib.observability"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": secrets.token_hex(8),
                                "name": name,
                                "kind": 1,
                                "startTimeUnixNano": str(now - 1_000_000),
                                "endTimeUnixNano": str(now),
                            }
                        ],
                    }
                ],
            }
        ]
    }
    base = otlp_http_url.rstrip("/")
    request(
        f"{base}/v1/traces",
        service="otelcol",
        what=f"the OTLP endpoint at {base}",
        timeout=timeout,
        json_body=json.dumps(body).encode(),
    )
    return trace_id


class TraceStore:
    """Jaeger's query API at ``base_url`` (the UI's port)."""

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    @classmethod
    def from_stack(cls, settings: StackSettings) -> TraceStore:
        """The compose stack's trace store as seen from this host."""
        return cls(f"http://{settings.url_host}:{settings.traces_ui_port}")

    def services(self) -> list[str]:
        """The service names the store holds spans of (what the UI's search lists)."""
        body = request(
            f"{self.base_url}/api/services",
            service="jaeger",
            what=f"the trace store at {self.base_url}",
            timeout=self.timeout,
        )
        try:
            return [str(name) for name in json.loads(body)["data"] or ()]
        except (ValueError, KeyError, TypeError) as exc:
            raise ServiceUnavailable(
                f"the trace store at {self.base_url} sent an unexpected service list",
                service="jaeger",
            ) from exc

    def trace(self, trace_id: str) -> list[dict[str, Any]] | None:
        """The spans of trace ``trace_id`` (Jaeger's JSON), or None if it has none yet."""
        try:
            body = request(
                f"{self.base_url}/api/traces/{trace_id}",
                service="jaeger",
                what=f"the trace store at {self.base_url}",
                timeout=self.timeout,
            )
        except NotFound:
            return None
        try:
            data = json.loads(body)["data"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ServiceUnavailable(
                f"the trace store at {self.base_url} sent an unexpected answer for trace "
                f"{trace_id}",
                service="jaeger",
            ) from exc
        spans = [span for trace in data or () for span in trace.get("spans", ())]
        return spans or None

    def wait_for(
        self, trace_id: str, *, timeout: float = 30.0, interval: float = 0.5
    ) -> list[dict[str, Any]]:
        """Poll :meth:`trace` until the trace is stored; raise after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.trace(trace_id)
            if spans:
                return spans
            if time.monotonic() >= deadline:
                raise ServiceUnavailable(
                    f"trace {trace_id} did not reach the trace store at {self.base_url} within "
                    f"{timeout:.0f} s; check `inv logs otelcol` for export errors",
                    service="jaeger",
                )
            time.sleep(interval)
