"""The metrics store's HTTP API: queries, targets, alerts, reload; its config check.

VictoriaMetrics answers the Prometheus query API (``/api/v1/query``,
``/api/v1/targets``) and, with ``-vmalert.proxyURL``, vmalert's alerts at
``/api/v1/alerts``. Only the standard library is used: a service that
imports infra_lib pays for no HTTP client.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra_lib.errors import ConfigError, ServiceUnavailable
from infra_lib.stack.settings import StackSettings

if TYPE_CHECKING:
    from infra_lib.stack.compose import Stack

__all__ = ["Alert", "MetricsStore", "Sample", "Series", "Target", "check_scrape_config"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    """One scrape target as the store sees it."""

    job: str
    instance: str
    health: str
    last_scrape: str
    last_error: str
    labels: dict[str, str]

    @property
    def up(self) -> bool:
        """Whether its last scrape succeeded."""
        return self.health == "up"

    @property
    def layer(self) -> str:
        """``stack`` for the stack's own targets, ``service`` for the team's."""
        return self.labels.get("layer", "stack")


@dataclass(frozen=True, slots=True)
class Sample:
    """One series of an instant query: its labels and value."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a range query: its labels and its ``(time, value)`` points."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert vmalert holds (pending or firing)."""

    name: str
    state: str
    labels: dict[str, str]


class MetricsStore:
    """A VictoriaMetrics (or Prometheus-compatible) server at ``base_url``."""

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    @classmethod
    def from_stack(cls, settings: StackSettings) -> MetricsStore:
        """The compose stack's metrics store as seen from this host."""
        return cls(f"http://{settings.url_host}:{settings.metrics_port}")

    # -- raw HTTP ----------------------------------------------------------

    def _request(self, path: str, *, method: str = "GET", **params: str) -> bytes:
        url = f"{self.base_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(url, method=method)  # noqa: S310 - http(s) only
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"metrics store URL {self.base_url!r} is not http(s)")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()[:300]
            raise ServiceUnavailable(
                f"the metrics store at {self.base_url} answered {exc.code} to {path}: {detail}",
                service="victoriametrics",
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ServiceUnavailable(
                f"the metrics store at {self.base_url} does not answer ({exc}); is the "
                "observability layer up? `inv up --with observability` starts it, "
                "`inv status` shows it",
                service="victoriametrics",
            ) from exc

    def _json(self, path: str, **params: str) -> Any:
        body = self._request(path, **params)
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise ServiceUnavailable(
                f"the metrics store at {self.base_url} sent a non-JSON answer to {path}",
                service="victoriametrics",
            ) from exc
        if not isinstance(data, dict) or data.get("status") != "success":
            raise ServiceUnavailable(
                f"the metrics store at {self.base_url} refused {path}: "
                f"{data.get('error') if isinstance(data, dict) else data}",
                service="victoriametrics",
            )
        return data.get("data")

    # -- API -----------------------------------------------------------------

    def healthy(self) -> bool:
        """Whether ``/health`` answers OK."""
        try:
            return self._request("/health").strip() == b"OK"
        except ServiceUnavailable:
            return False

    def reload(self) -> None:
        """Re-read the scrape config now (it is also re-read every 30 s)."""
        self._request("/-/reload", method="POST")

    def query(self, promql: str) -> list[Sample]:
        """An instant query; one :class:`Sample` per series."""
        data = self._json("/api/v1/query", query=promql)
        samples = []
        for item in data.get("result", []) if isinstance(data, dict) else []:
            value = item.get("value", [0, "nan"])[1]
            samples.append(Sample(dict(item.get("metric", {})), float(value)))
        return samples

    def query_range(self, promql: str, *, start: float, end: float, step: str) -> list[Series]:
        """A range query from ``start`` to ``end`` (Unix seconds), as a dashboard runs it.

        Points the store has no value for (NaN, such as 0/0) are left out.
        """
        data = self._json(
            "/api/v1/query_range", query=promql, start=f"{start:.3f}", end=f"{end:.3f}", step=step
        )
        found = []
        for item in data.get("result", []) if isinstance(data, dict) else []:
            points = [
                (float(at), float(value))
                for at, value in item.get("values", [])
                if not math.isnan(float(value))
            ]
            found.append(Series(dict(item.get("metric", {})), points))
        return found

    def value(self, promql: str) -> float | None:
        """The value of a query that yields one series (None when it yields none)."""
        samples = self.query(promql)
        return samples[0].value if samples else None

    def targets(self) -> list[Target]:
        """The active scrape targets, by job and instance."""
        data = self._json("/api/v1/targets")
        found = []
        for item in data.get("activeTargets", []) if isinstance(data, dict) else []:
            labels = dict(item.get("labels", {}))
            found.append(
                Target(
                    job=labels.get("job", item.get("scrapePool", "?")),
                    instance=labels.get("instance", "?"),
                    health=str(item.get("health", "unknown")),
                    last_scrape=str(item.get("lastScrape", "")),
                    last_error=str(item.get("lastError", "")),
                    labels=labels,
                )
            )
        return sorted(found, key=lambda t: (t.layer != "stack", t.job, t.instance))

    def alerts(self) -> list[Alert]:
        """Alerts vmalert holds now (through ``-vmalert.proxyURL``)."""
        data = self._json("/api/v1/alerts")
        return [
            Alert(
                name=str(item.get("labels", {}).get("alertname", item.get("name", "?"))),
                state=str(item.get("state", "?")),
                labels=dict(item.get("labels", {})),
            )
            for item in (data.get("alerts", []) if isinstance(data, dict) else [])
        ]


def check_scrape_config(stack: Stack, path: Path) -> None:
    """Run VictoriaMetrics' own checker (``-dryRun``) on ``path``, in its image.

    Raises :class:`ConfigError` with the server's message when it rejects
    the file; nothing is applied before this passes.
    """
    from python_on_whales.exceptions import DockerException

    image = stack.settings.victoriametrics_image
    command = [
        f"-promscrape.config=/check/{path.name}",
        "-promscrape.config.strictParse",
        "-dryRun",
        "-loggerLevel=ERROR",
    ]
    # Detached, then waited for: the checker's log lines (stderr) are kept
    # for the error message instead of going to the terminal.
    try:
        container = stack.docker.run(
            image,
            command,
            entrypoint="/victoria-metrics-prod",
            detach=True,
            volumes=[(str(path.parent), "/check", "ro")],
            networks=["none"],
        )
        try:
            status = stack.docker.container.wait(container)
            output = stack.docker.container.logs(container)
        finally:
            stack.docker.container.remove(container, force=True)
    except DockerException as exc:
        raise ConfigError(
            f"could not run VictoriaMetrics' config check in {image}: "
            f"{(exc.stderr or str(exc)).strip()}"
        ) from exc
    if status != 0:
        lines = [line for line in str(output).splitlines() if line.strip()]
        raise ConfigError(
            f"VictoriaMetrics rejects the generated scrape config {path}: "
            f"{' / '.join(lines[-3:])}. Nothing was applied; check the `metrics` entries "
            "in infra.toml."
        )
    logger.debug("scrape config %s passed -dryRun in %s", path, image)
