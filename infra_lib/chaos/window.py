"""What the observability layer's stores saw while an experiment ran.

The timeline says what the probe saw; the stores say what the service and
its neighbours reported: a few series per service from the metrics store
(as change points, so a 60 s window is a few words per series) and the
service's own log lines from the log store, both for the experiment's
window plus a lead-in before the fault. Nothing here is needed for the
experiment itself: with the layer off, or a store not answering, the
report says so and the experiment's result stands.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from infra_lib.chaos.disk import DISK_FAULTS
from infra_lib.chaos.gateway import GATEWAY_FAULTS
from infra_lib.errors import ServiceUnavailable
from infra_lib.observability.logstore import LogStore, stream_filter
from infra_lib.observability.store import MetricsStore, Series

if TYPE_CHECKING:
    from infra_lib.stack.settings import StackSettings

__all__ = ["WINDOW_METRICS", "MetricLine", "Window", "change_points", "observe_window"]

#: Per service: (label, query) of the series worth seeing during a fault.
WINDOW_METRICS: dict[str, tuple[tuple[str, str], ...]] = {
    "postgres": (
        ("pg_up", "max(pg_up)"),
        ("connections", "sum(pg_stat_activity_count)"),
    ),
    "redis": (
        ("redis_up", "max(redis_up)"),
        # Drops to 0 when the server restarts: a crash shows here, not in up.
        ("uptime s", "max(redis_uptime_in_seconds)"),
        ("clients", "max(redis_connected_clients)"),
    ),
    "minio": (("up", 'max(up{job="minio"})'),),
    "livekit": (("up", 'max(up{job="livekit"})'),),
}

# vmalert writes its alerts' states back to the store as ALERTS series.
_FIRING = 'max by (alertname) (ALERTS{alertstate="firing"})'

# What VictoriaLogs puts in place of an empty message.
_NO_MESSAGE = "missing _msg field"

#: Seconds of the window before the fault: the baseline to compare with.
LEAD_IN = 15.0

#: Most log lines shown; the first ones after the fault matter most.
MAX_LOG_LINES = 20


@dataclass(frozen=True)
class MetricLine:
    """One series in the window: its value from each time it changed, ``at`` seconds
    after the fault (negative: before it)."""

    label: str
    query: str
    changes: list[tuple[float, float]]

    def describe(self) -> str:
        """``pg_up: 1 (-14.0 s), 0 (+3.0 s), 1 (+9.0 s)``, or that the store had none."""
        if not self.changes:
            return f"{self.label}: no samples in the window"
        return f"{self.label}: " + ", ".join(
            f"{_number(value)} ({at:+.1f} s)" for at, value in self.changes
        )


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"


@dataclass
class Window:
    """The stores' view of ``start`` to ``end`` (Unix seconds); the fault was at ``fault_at``."""

    start: float
    end: float
    fault_at: float
    metrics: list[MetricLine] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    #: What could not be seen, and why (a store down, no scrape in the window).
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The window as lines for a terminal."""
        out = [m.describe() for m in self.metrics]
        # A terminal line each; the report itself keeps 300 characters.
        out += [f"log {line[:160]}" for line in self.logs] or ["log: no lines of the service"]
        return out + [f"note: {note}" for note in self.notes]


def change_points(series: list[Series], fault_at: float) -> list[tuple[float, float]]:
    """The points of ``series`` where the value differs from the one before.

    A range query repeats the last sample at every step; only the changes are news.
    """
    points = sorted(p for s in series for p in s.points)
    changes: list[tuple[float, float]] = []
    for at, value in points:
        if not changes or changes[-1][1] != value:
            changes.append((round(at - fault_at, 1), value))
    return changes


def _rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _log_query(project: str, fault: str, service: str, start: float, end: float) -> str:
    window = f"_time:[{_rfc3339(start)}, {_rfc3339(end)}]"
    if fault in GATEWAY_FAULTS:
        # The gateway's access log names the route's service on each line.
        where = stream_filter({"compose.project": project, "compose.service": "gateway"})
        return f'{where} {window} "service={service}" | sort by (_time)'
    where = stream_filter({"compose.project": project, "compose.service": service})
    return f"{where} {window} | sort by (_time)"


def _queries(fault: str, service: str) -> tuple[tuple[str, str], ...]:
    queries = WINDOW_METRICS.get(service, ())
    if fault in DISK_FAULTS:
        # node-exporter sees each data volume at /volumes/<volume>.
        queries += (
            (
                "volume free bytes",
                f'min(node_filesystem_avail_bytes{{job="node",mountpoint="/volumes/{service}-data"}})',
            ),
        )
    return queries


def _wait_for_scrape(store: MetricsStore, after: float, timeout: float) -> bool:
    """Wait until every target has been scraped after ``after``; false on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        # MetricsQL: the time of each target's last sample, not of the query.
        oldest = store.value('min(tlast_over_time(up{layer="stack"}[5m]))')
        if oldest is not None and oldest >= after:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(1.0)


def observe_window(
    settings: StackSettings,
    project: str,
    fault: str,
    service: str,
    *,
    fault_at: float,
    end: float | None = None,
    scrape_wait: float = 15.0,
) -> Window:
    """Read the stores for the window from ``LEAD_IN`` before ``fault_at`` to ``end``.

    ``fault_at`` and ``end`` are Unix seconds. A scrape comes every
    ``METRICS_SCRAPE_INTERVAL``, so the end of the window reaches the store
    only at the next one: this waits for it, for at most ``scrape_wait``
    seconds (0: read what is there now).
    """
    end = time.time() if end is None else end
    window = Window(fault_at - LEAD_IN, end, fault_at)
    metrics = MetricsStore.from_stack(settings)
    try:
        if scrape_wait > 0:
            if _wait_for_scrape(metrics, end, scrape_wait):
                # Up to the scrape that saw the end: its samples are the end's.
                end = window.end = time.time()
            else:
                window.notes.append(
                    f"no scrape after the rollback within {scrape_wait:g} s; the last seconds "
                    "of the window are missing"
                )
        for label, query in _queries(fault, service):
            series = metrics.query_range(query, start=window.start, end=end, step="1s")
            window.metrics.append(MetricLine(label, query, change_points(series, fault_at)))
        firing = metrics.query_range(
            _FIRING,
            start=window.start,
            end=end,
            step="5s",
        )
        names = sorted({s.labels.get("alertname", "?") for s in firing if s.points})
        window.notes.append(f"alerts firing: {', '.join(names)}" if names else "no alert fired")
    except ServiceUnavailable as exc:
        window.notes.append(f"metrics not read: {str(exc).splitlines()[0]}")
    logs = LogStore.from_stack(settings)
    try:
        records = logs.query(
            _log_query(project, fault, service, window.start, end), limit=2 * MAX_LOG_LINES
        )
    except ServiceUnavailable as exc:
        window.notes.append(f"logs not read: {str(exc).splitlines()[0]}")
    else:
        for record in records:
            message = str(record.get("_msg", "")).strip()
            # An empty line of the container comes back as the store's placeholder.
            if not message or message.startswith(_NO_MESSAGE):
                continue
            at = _seconds_after(str(record.get("_time", "")), fault_at)
            window.logs.append(f"{at} {message[:300]}")
        del window.logs[MAX_LOG_LINES:]
    return window


def _seconds_after(stamp: str, fault_at: float) -> str:
    try:
        # VictoriaLogs gives nanoseconds; Python parses up to microseconds.
        head, _, rest = stamp.rstrip("Z").partition(".")
        moment = datetime.fromisoformat(f"{head}.{(rest + '000000')[:6]}+00:00")
    except ValueError:
        return stamp or "-"
    return f"{moment.timestamp() - fault_at:+.1f} s"
