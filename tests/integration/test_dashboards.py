"""Every query of every shipped Grafana dashboard, run against the live stores.

Grafana is an optional extra that is not run here (compose/grafana.yaml), so
this is what keeps its dashboards honest: each panel's query must return
data from the real VictoriaMetrics or VictoriaLogs of the running stack.
Before checking, the module makes the traffic a team's day would (queries,
a rollback and a failed login on PostgreSQL, hits and misses on Redis, S3
requests and errors, a LiveKit room) and starts two team services on the
host, one in each metrics convention the services dashboard reads.
"""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from infra_lib.livekit.config import LiveKitConfig
from infra_lib.livekit.rooms import RoomService
from infra_lib.manifest import load_manifest, parse_manifest
from infra_lib.observability.apply import prepare, reload
from infra_lib.observability.logstore import LogStore
from infra_lib.observability.store import MetricsStore
from infra_lib.postgres.config import PostgresConfig
from infra_lib.redis.config import RedisConfig
from infra_lib.stack.compose import Stack
from infra_lib.storage.config import S3Config
from infra_lib.storage.presign import boto3_client
from tests.grafana import Query, queries
from tests.integration import test_observability as _metrics_tests
from tests.integration.conftest import ROOT, host_gateway_address

pytestmark = pytest.mark.integration

# The metrics tests' module fixture: the stack with the layer switched on.
layer = _metrics_tests.layer
_until = _metrics_tests._until

#: The two team services of this module, by metrics convention.
PROBES = ("board-probe", "auth-probe")


@dataclass
class _Counters:
    scrapes: int = 0


def _exposition(service: str, n: int) -> bytes:
    """A service's metrics after ``n`` scrapes: counters grow with every scrape."""
    ok, failed = 10 * n, n
    if service == "board-probe":
        # prometheus-client / prometheus-fastapi-instrumentator naming.
        lines = [
            "# TYPE http_requests_total counter",
            f'http_requests_total{{handler="/api/boards",method="GET",status="2xx"}} {ok}',
            f'http_requests_total{{handler="/api/boards",method="GET",status="5xx"}} {failed}',
            "# TYPE http_request_duration_seconds histogram",
            *(
                f'http_request_duration_seconds_bucket{{handler="/api/boards",method="GET",le="{le}"}} {count}'
                for le, count in (
                    ("0.05", 6 * n),
                    ("0.25", 10 * n),
                    ("1.0", 11 * n),
                    ("+Inf", 11 * n),
                )
            ),
            f'http_request_duration_seconds_count{{handler="/api/boards",method="GET"}} {11 * n}',
            f'http_request_duration_seconds_sum{{handler="/api/boards",method="GET"}} {1.1 * n}',
            "# TYPE process_resident_memory_bytes gauge",
            "process_resident_memory_bytes 52428800",
        ]
    else:
        # Spring Boot Actuator / Micrometer naming (percentile histograms on).
        tags = 'method="POST",outcome="{o}",status="{s}",uri="/api/auth/login"'
        lines = [
            "# TYPE http_server_requests_seconds histogram",
            f"http_server_requests_seconds_count{{{tags.format(o='SUCCESS', s='200')}}} {ok}",
            f"http_server_requests_seconds_count{{{tags.format(o='SERVER_ERROR', s='500')}}} {failed}",
            *(
                f'http_server_requests_seconds_bucket{{{tags.format(o="SUCCESS", s="200")},le="{le}"}} {count}'
                for le, count in (("0.1", 5 * n), ("0.5", 10 * n), ("+Inf", 10 * n))
            ),
            "# TYPE jvm_memory_used_bytes gauge",
            'jvm_memory_used_bytes{area="heap",id="G1 Eden Space"} 31457280',
            'jvm_memory_used_bytes{area="nonheap",id="Metaspace"} 20971520',
        ]
    return ("\n".join(lines) + "\n").encode()


def _handler(service: str, counters: _Counters) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            counters.scrapes += 1
            body = _exposition(service, counters.scrapes)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@pytest.fixture(scope="module")
def team_services(layer: Stack) -> Iterator[None]:
    """The two probe services on the host, scraped every 2 s as manifest services."""
    gateway = host_gateway_address(layer, "victoriametrics")
    servers = []
    services = {}
    for name in PROBES:
        server = http.server.ThreadingHTTPServer((gateway, 0), _handler(name, _Counters()))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        services[name] = {"metrics": {"port": server.server_address[1], "interval": "2s"}}
    env_dir = ROOT / "env" / layer.project_name
    manifest = parse_manifest({"services": services}, path="probes.toml")
    try:
        prepare(layer, manifest, env_dir)
        reload(layer)
        yield
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        prepare(layer, load_manifest(ROOT / "infra.toml"), env_dir)
        reload(layer)


@pytest.fixture(scope="module")
def traffic(layer: Stack) -> Iterator[None]:
    """What a working day does to the backing services, so every panel has data."""
    settings = layer.settings
    postgres = PostgresConfig.from_stack(settings)
    with psycopg.connect(**postgres.connect_kwargs(autocommit=True)) as conn:
        for _ in range(20):
            conn.execute("SELECT count(*) FROM pg_class").fetchone()
        conn.execute("BEGIN")
        conn.execute("CREATE TEMP TABLE dashboard_probe (n int)")
        conn.execute("INSERT INTO dashboard_probe SELECT generate_series(1, 100)")
        conn.execute("ROLLBACK")
    # A failed login: PostgreSQL logs it as FATAL.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(**postgres.connect_kwargs(password="not-the-password", connect_timeout=5))
    # A counter's rise shows in a rate only against a sample scraped before
    # it: right after the layer starts, the first scrape could come after the
    # lookups, and the hit ratio would be 0/0 (no point) for the whole window.
    store = MetricsStore.from_stack(settings)
    _until("a scrape of Redis's counters", lambda: store.query("redis_keyspace_hits_total"), 60)
    client = RedisConfig.from_stack(settings).client(db=15)
    key = f"dashboard-probe:{uuid.uuid4().hex}"
    client.set(key, "1", ex=600)
    for _ in range(10):
        client.get(key)
        client.get(key + ":missing")
    s3 = boto3_client(S3Config.from_stack(settings), public=False)
    s3.list_buckets()
    for _ in range(3):
        with pytest.raises(s3.exceptions.ClientError):
            s3.head_bucket(Bucket=f"dashboard-probe-{uuid.uuid4().hex[:12]}")
    room = f"dashboard-probe-{uuid.uuid4().hex[:8]}"
    with RoomService(LiveKitConfig.from_stack(settings)) as rooms:
        rooms.create_room(room, empty_timeout=timedelta(minutes=10))
        try:
            yield
        finally:
            rooms.delete_room(room)
            client.delete(key)
            client.close()


def _returns_data(store: MetricsStore, logs: LogStore, query: Query) -> object:
    if query.datasource == "victorialogs":
        return logs.query(f"_time:1h {query.expanded()}", limit=5)
    now = time.time()
    series = store.query_range(query.expanded(), start=now - 900, end=now, step="15s")
    found = [s for s in series if s.points]
    if query.dashboard == "services" or 'layer="service"' in query.expr:
        # Each probe service must be in the answer: both conventions work.
        names = {s.labels.get("service") for s in found}
        return found if names >= set(PROBES) else None
    return found


@pytest.mark.usefixtures("team_services", "traffic")
@pytest.mark.parametrize("query", queries(), ids=lambda q: f"{q.dashboard}:{q.panel}")
def test_every_dashboard_query_returns_data(layer: Stack, query: Query) -> None:
    store = MetricsStore.from_stack(layer.settings)
    logs = LogStore.from_stack(layer.settings)
    _until(f"{query.where} to return data", lambda: _returns_data(store, logs, query), timeout=90)


def test_compose_accepts_the_grafana_extra_as_shipped(layer: Stack) -> None:
    # Grafana is never started here; Compose must still accept its service
    # with the layer's files, and every folder it mounts must exist.
    from python_on_whales import DockerClient

    client = DockerClient(
        compose_files=[layer.paths.compose_file],
        compose_project_name=layer.project_name,
        compose_env_files=[layer.paths.env_file, *layer.extra_env_files],
        compose_project_directory=layer.paths.compose_file.parent,
        compose_profiles=[*layer.settings.profiles, "grafana"],
    )
    config = client.compose.config(return_json=True)
    grafana = config["services"]["grafana"]
    assert grafana["image"] == layer.settings.grafana_image
    for volume in grafana["volumes"]:
        if volume["type"] == "bind":
            assert Path(volume["source"]).is_dir(), volume["source"]
    assert config["secrets"]["grafana-admin-password"]["environment"] == (
        "INFRA_GRAFANA_ADMIN_PASSWORD"
    )
    ports = {p["published"] for p in grafana["ports"]}
    assert ports == {str(layer.settings.grafana_port)}
