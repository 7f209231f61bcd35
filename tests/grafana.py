"""The Grafana extra's files, read the way Grafana reads them.

Grafana is not run here (see compose/grafana.yaml), so its dashboards are
checked without it: the unit tests check their shape and datasources, the
integration tests run every query against the live stores. Both read the
files through this module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "compose" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"

#: Grafana's macros in queries, with the values a 1-hour dashboard at its
#: default width would give them (``$__rate_interval`` is at least four
#: scrape intervals).
MACROS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


@dataclass(frozen=True, slots=True)
class Query:
    """One target of one panel."""

    dashboard: str
    panel: str
    datasource: str
    expr: str

    @property
    def where(self) -> str:
        return f"{self.dashboard}.json, panel {self.panel!r}"

    def expanded(self) -> str:
        """The query with Grafana's macros replaced; an unknown macro is an error."""
        text = self.expr
        for macro, value in MACROS.items():
            text = text.replace(macro, value)
        left = re.findall(r"\$\{?\w+", text)
        if left:
            raise AssertionError(f"{self.where}: unknown variable or macro {left}")
        return text


def read_provisioning(path: Path) -> Any:
    """A provisioning file: JSON (which is YAML) after its ``#`` comment lines."""
    lines = [x for x in path.read_text().splitlines() if not x.lstrip().startswith("#")]
    return json.loads("\n".join(lines))


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard file, by file stem."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The panels of a dashboard, those inside rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries() -> list[Query]:
    """Every panel target of every dashboard."""
    found = []
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                source = target.get("datasource") or panel.get("datasource") or {}
                found.append(Query(name, panel["title"], source.get("uid", ""), target["expr"]))
    return found
