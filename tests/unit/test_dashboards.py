"""The Grafana extra's files: shape, datasources and where they are mounted.

Grafana itself is not run here; tests/integration/test_dashboards.py runs
every query against the live stores.
"""

from __future__ import annotations

import re

import pytest

from tests.grafana import GRAFANA, ROOT, Query, dashboards, panels, queries, read_provisioning

DATASOURCES = read_provisioning(GRAFANA / "provisioning" / "datasources" / "infra.yaml")


def test_every_dashboard_of_the_issue_ships() -> None:
    assert set(dashboards()) == {"overview", "postgres", "redis", "minio", "livekit", "services"}


def test_dashboards_have_unique_uids_and_panels_fit_the_grid() -> None:
    uids = [d["uid"] for d in dashboards().values()]
    assert len(uids) == len(set(uids))
    for name, dashboard in dashboards().items():
        ids = [p["id"] for p in panels(dashboard)]
        assert len(ids) == len(set(ids)), name
        for panel in panels(dashboard):
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, (name, panel["title"])
            assert panel["targets"], (name, panel["title"])
            assert panel.get("description"), (name, panel["title"])


def test_every_query_uses_a_provisioned_datasource() -> None:
    uids = {source["uid"] for source in DATASOURCES["datasources"]}
    for query in queries():
        assert query.datasource in uids, query.where


def test_datasources_point_at_the_layers_services() -> None:
    compose = (ROOT / "compose" / "observability.yaml").read_text()
    for source in DATASOURCES["datasources"]:
        match = re.fullmatch(r"http://([a-z]+):(\d+)", source["url"])
        assert match, source["url"]
        host, port = match.groups()
        assert f"\n  {host}:\n" in compose, source["name"]
        assert port in compose, source["name"]


def test_dashboard_folder_is_the_one_grafana_mounts() -> None:
    provider = read_provisioning(GRAFANA / "provisioning" / "dashboards" / "infra.yaml")
    path = provider["providers"][0]["options"]["path"]
    compose = (ROOT / "compose" / "grafana.yaml").read_text()
    assert f"- ./grafana/dashboards:{path}:ro" in compose
    assert f"DEFAULT_HOME_DASHBOARD_PATH: {path}/overview.json" in compose


@pytest.mark.parametrize("query", queries(), ids=lambda q: f"{q.dashboard}:{q.panel}")
def test_no_query_hides_missing_data(query: Query) -> None:
    # A constant fallback would make an empty query look like data.
    assert "vector(" not in query.expr and "absent(" not in query.expr, query.where
    query.expanded()
