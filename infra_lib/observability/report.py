"""What ``inv metrics`` prints and what ``inv smoke`` checks, from the metrics store."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from infra_lib.observability.store import Alert, MetricsStore, Target

__all__ = ["MetricsRow", "TargetsCheck", "check_targets", "metrics_rows"]


@dataclass(frozen=True, slots=True)
class MetricsRow:
    """One target: where it is, whether it answers, and its key gauges."""

    job: str
    instance: str
    layer: str
    up: bool
    last_scrape: str
    gauges: str
    error: str


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.0f} B"


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"


# Per job: (label, numerator query, denominator query or None, formatter).
_Gauge = tuple[str, str, str | None, Callable[[float], str]]
KEY_GAUGES: dict[str, tuple[_Gauge, ...]] = {
    "postgres": (
        (
            "connections",
            "sum(pg_stat_activity_count)",
            "max(pg_settings_max_connections)",
            _number,
        ),
        ("databases", "count(pg_database_size_bytes)", None, _number),
    ),
    "redis": (
        ("memory", "max(redis_memory_used_bytes)", "max(redis_memory_max_bytes)", _bytes),
        ("clients", "max(redis_connected_clients)", None, _number),
    ),
    "minio": (
        (
            "free",
            "max(minio_cluster_capacity_usable_free_bytes)",
            "max(minio_cluster_capacity_usable_total_bytes)",
            _bytes,
        ),
        ("buckets", "max(minio_cluster_bucket_total)", None, _number),
    ),
    "livekit": (
        ("rooms", "sum(livekit_room_total)", None, _number),
        ("participants", "sum(livekit_participant_total)", None, _number),
    ),
    "victoriametrics": (
        ("series", 'sum(vm_cache_entries{type="storage/hour_metric_ids"})', None, _number),
    ),
    "vmalert": (
        ("firing alerts", 'count(ALERTS{alertstate="firing"}) or vector(0)', None, _number),
    ),
}


def _age(stamp: str, now: datetime) -> str:
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp or "-"
    if when.year < 2000:
        return "never"
    return f"{max((now - when).total_seconds(), 0):.0f}s ago"


def _gauges(store: MetricsStore, job: str) -> str:
    parts = []
    for label, query, limit, fmt in KEY_GAUGES.get(job, ()):
        value = store.value(query)
        if value is None or math.isnan(value):
            continue
        text = fmt(value)
        if limit is not None:
            total = store.value(limit)
            if total is not None and total > 0:
                text += f" / {fmt(total)} ({value / total:.0%})"
        parts.append(f"{label} {text}")
    return ", ".join(parts)


def metrics_rows(store: MetricsStore, *, now: datetime | None = None) -> list[MetricsRow]:
    """One row per scrape target, the stack's first, with the job's key gauges."""
    moment = now or datetime.now(UTC)
    rows = []
    for target in store.targets():
        rows.append(
            MetricsRow(
                job=target.job,
                instance=target.instance,
                layer=target.layer,
                up=target.up,
                last_scrape=_age(target.last_scrape, moment),
                gauges=_gauges(store, target.job) if target.up else "",
                error=target.last_error,
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class TargetsCheck:
    """Targets by state, and the alerts firing now."""

    stack_up: tuple[Target, ...]
    stack_down: tuple[Target, ...]
    services_up: tuple[Target, ...]
    services_down: tuple[Target, ...]
    firing: tuple[Alert, ...]

    @property
    def ok(self) -> bool:
        """Every target of the stack itself answers (team services may be stopped)."""
        return bool(self.stack_up) and not self.stack_down

    def summary(self) -> str:
        """One line for a smoke report."""
        text = f"{len(self.stack_up)}/{len(self.stack_up) + len(self.stack_down)} stack targets up"
        total = len(self.services_up) + len(self.services_down)
        if total:
            text += f", team services {len(self.services_up)}/{total} up"
        if self.firing:
            text += f", firing: {', '.join(sorted({a.name for a in self.firing}))}"
        return text

    def failure(self) -> str:
        """What is down and why, for an error message."""
        if not self.stack_up and not self.stack_down:
            return "the metrics store has no targets; is its scrape config mounted?"
        return "; ".join(
            f"{t.job} ({t.instance}): {t.last_error or t.health}" for t in self.stack_down
        )


def check_targets(store: MetricsStore) -> TargetsCheck:
    """Sort the store's targets into up and down, the stack's and the services'."""
    targets = store.targets()
    firing = tuple(a for a in store.alerts() if a.state == "firing")

    def pick(layer: str, up: bool) -> tuple[Target, ...]:
        return tuple(
            t for t in targets if (t.layer == "stack") == (layer == "stack") and t.up == up
        )

    return TargetsCheck(
        pick("stack", True),
        pick("stack", False),
        pick("service", True),
        pick("service", False),
        firing,
    )
