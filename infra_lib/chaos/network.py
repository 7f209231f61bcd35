"""Network faults between a client and a backing service, through Toxiproxy.

The ``chaos`` Compose profile runs one Toxiproxy with a proxy per backing
service (``compose/toxiproxy/proxies.json``). A client pointed at a proxy's
port (see :func:`proxied_settings`) reaches the real server; a fault is one
toxic named :data:`TOXIC` on that proxy, or the proxy switched off (``cut``).
Undoing a fault removes the toxic and switches the proxy on again, which is
harmless when nothing was applied, so a rollback never has to know how far
the fault got.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from infra_lib.errors import ConfigError
from infra_lib.observability.http import NotFound, request
from infra_lib.stack.settings import StackSettings

__all__ = [
    "NETWORK_FAULTS",
    "PROXIED_SERVICES",
    "TOXIC",
    "NetworkParams",
    "Toxiproxy",
    "apply_network_fault",
    "proxied_settings",
    "undo_network_fault",
]

#: The network faults, with what a client going through the proxy sees.
NETWORK_FAULTS: dict[str, str] = {
    "latency": "every answer from the service is delayed by --latency-ms (± --jitter-ms)",
    "bandwidth": "what the service sends is limited to --rate-kbps KB/s",
    "timeout": "no data passes; connections hang, closed after --after-ms (0: never)",
    "reset": "connections are reset (TCP RST) after --after-ms",
    "cut": "the proxy is switched off: open connections close, new ones are refused",
}

#: Backing services with a proxy, and the setting a client's port comes from.
PROXIED_SERVICES: dict[str, tuple[str, str]] = {
    "postgres": ("postgres_port", "toxiproxy_postgres_port"),
    "redis": ("redis_port", "toxiproxy_redis_port"),
    "minio": ("minio_api_port", "toxiproxy_minio_port"),
}

#: The name of the one toxic an experiment adds; a leftover is found by it.
TOXIC = "infra-chaos"

_LIMITS_MS = 600_000


@dataclass(frozen=True)
class NetworkParams:
    """The knobs of the network faults; each fault reads the ones it needs."""

    latency_ms: int = 500
    jitter_ms: int = 0
    rate_kbps: int = 16
    after_ms: int = 0

    def check(self) -> None:
        """Raise ConfigError for a value Toxiproxy would take but nobody means."""
        for name in ("latency_ms", "jitter_ms", "after_ms"):
            value = getattr(self, name)
            if not 0 <= value <= _LIMITS_MS:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} must be between 0 and {_LIMITS_MS} (ms), not {value}")
        if self.rate_kbps < 1:
            raise ConfigError(f"--rate-kbps must be at least 1, not {self.rate_kbps}")

    def toxic(self, fault: str) -> tuple[str, dict[str, int]] | None:
        """Toxiproxy's toxic type and attributes for ``fault``; ``None`` for ``cut``."""
        if fault == "latency":
            return "latency", {"latency": self.latency_ms, "jitter": self.jitter_ms}
        if fault == "bandwidth":
            return "bandwidth", {"rate": self.rate_kbps}
        if fault == "timeout":
            return "timeout", {"timeout": self.after_ms}
        if fault == "reset":
            return "reset_peer", {"timeout": self.after_ms}
        if fault == "cut":
            return None
        raise ConfigError(
            f"unknown network fault {fault!r}; use one of: {', '.join(NETWORK_FAULTS)}"
        )

    def describe(self, fault: str) -> str:
        """The fault with its values, for the timeline."""
        if fault == "latency":
            return f"latency {self.latency_ms} ms ± {self.jitter_ms} ms"
        if fault == "bandwidth":
            return f"bandwidth {self.rate_kbps} KB/s"
        if fault in ("timeout", "reset"):
            return f"{fault} after {self.after_ms} ms"
        return "connections cut"


class Toxiproxy:
    """A small client of Toxiproxy's HTTP API (the few calls experiments need)."""

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: StackSettings) -> Toxiproxy:
        """The stack's proxy; its API is published on the loopback only."""
        return cls(f"http://127.0.0.1:{settings.toxiproxy_api_port}")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        raw = request(
            self.base_url + path,
            service="toxiproxy",
            what=f"the failure experiments' proxy (Toxiproxy) at {self.base_url}",
            timeout=self.timeout,
            json_body=None if body is None else json.dumps(body).encode(),
            method=method,
            down_hint="start it with `inv up --with chaos`",
        )
        return json.loads(raw) if raw.strip() else None

    def proxies(self) -> dict[str, Any]:
        """Every proxy by name, with its toxics."""
        found = self._call("GET", "/proxies")
        return dict(found or {})

    def add_toxic(self, proxy: str, kind: str, attributes: dict[str, int]) -> None:
        """Add toxic :data:`TOXIC` of ``kind`` on what the service sends back."""
        self._call(
            "POST",
            f"/proxies/{proxy}/toxics",
            {
                "name": TOXIC,
                "type": kind,
                "stream": "downstream",
                "toxicity": 1.0,
                "attributes": attributes,
            },
        )

    def remove_toxic(self, proxy: str) -> bool:
        """Remove toxic :data:`TOXIC`; ``False`` when there was none."""
        try:
            self._call("DELETE", f"/proxies/{proxy}/toxics/{TOXIC}")
        except NotFound:
            return False
        return True

    def set_enabled(self, proxy: str, enabled: bool) -> None:
        """Switch a proxy on or off; off closes its open connections."""
        self._call("POST", f"/proxies/{proxy}", {"enabled": enabled})


def _require_proxied(service: str) -> None:
    if service not in PROXIED_SERVICES:
        raise ConfigError(
            f"network faults act on the proxy in front of {', '.join(PROXIED_SERVICES)}; "
            f"{service!r} has none"
        )


def proxied_settings(settings: StackSettings, service: str) -> StackSettings:
    """``settings`` with ``service``'s port replaced by its proxy's, for a client."""
    _require_proxied(service)
    direct, proxy = PROXIED_SERVICES[service]
    return settings.model_copy(update={direct: getattr(settings, proxy)})


def apply_network_fault(api: Toxiproxy, fault: str, service: str, params: NetworkParams) -> str:
    """Put ``fault`` on ``service``'s proxy; say what was done."""
    _require_proxied(service)
    toxic = params.toxic(fault)
    if toxic is None:
        api.set_enabled(service, False)
    else:
        api.add_toxic(service, *toxic)
    return f"{params.describe(fault)} on the proxy to {service}"


def undo_network_fault(api: Toxiproxy, service: str) -> str:
    """Take any fault off ``service``'s proxy; say what was done."""
    _require_proxied(service)
    removed = api.remove_toxic(service)
    proxy = api.proxies().get(service, {})
    if proxy.get("enabled") is False:
        api.set_enabled(service, True)
        return "proxy switched on again"
    return "toxic removed" if removed else "nothing was on the proxy"
