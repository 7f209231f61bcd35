"""The observability layer against the real servers: targets, series, alerts, credentials.

The layer is off by default, and CI runs the README's two commands, so this
module switches it on itself (`inv up --with observability`) when it is off,
and off again afterwards, leaving the stack as it found it.
"""

from __future__ import annotations

import http.server
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
import redis

from infra_lib.errors import ConfigError
from infra_lib.manifest import load_manifest, parse_manifest
from infra_lib.observability.apply import prepare, reload
from infra_lib.observability.credentials import POSTGRES_MONITOR_ROLE, REDIS_MONITOR_USER
from infra_lib.observability.layer import LayerPaths, is_enabled
from infra_lib.observability.report import check_targets
from infra_lib.observability.scrape import STACK_JOBS
from infra_lib.observability.store import MetricsStore, check_scrape_config
from infra_lib.stack.compose import Stack, StackPaths
from infra_lib.stack.envfile import parse_env_lines
from infra_lib.stack.settings import load_stack_settings
from tests.integration.conftest import ROOT, host_gateway_address, run_inv

pytestmark = pytest.mark.integration

_T = TypeVar("_T")


def _until(what: str, probe: Callable[[], _T | None], timeout: float = 120.0) -> _T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except Exception as exc:  # noqa: BLE001 - reported below if it never passes
            last = exc
        else:
            if value:
                return value
            last = value
        time.sleep(2)
    pytest.fail(f"{what} within {timeout:.0f} s; last: {last!r}")


def _stack() -> Stack:
    paths = StackPaths.for_root(ROOT)
    settings = load_stack_settings(paths.env_file, environ=os.environ)
    env_dir = ROOT / "env" / settings.compose_project_name
    return Stack(settings, paths, extra_env_files=[LayerPaths(env_dir).secrets_env])


@pytest.fixture(scope="module")
def layer() -> Iterator[Stack]:
    """The running stack with the observability layer on, every stack target up."""
    was_on = is_enabled(_stack().settings)
    if not was_on:
        result = run_inv("up", "--with", "observability")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stack = _stack()
    store = MetricsStore.from_stack(stack.settings)
    _until("every stack target up", lambda: check_targets(store).ok)
    yield stack
    if not was_on:
        result = run_inv("up", "--without", "observability", "--no-provision")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def store(layer: Stack) -> MetricsStore:
    return MetricsStore.from_stack(layer.settings)


@pytest.fixture(scope="module")
def env_dir(layer: Stack) -> Path:
    return ROOT / "env" / layer.project_name


def test_status_lists_the_layer(layer: Stack) -> None:
    result = run_inv("status")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("victoriametrics", "vmalert", "postgres-exporter", "redis-exporter"):
        assert name in result.stdout


def test_every_stack_target_is_up(store: MetricsStore) -> None:
    check = check_targets(store)
    assert check.ok, check.failure()
    assert {t.job for t in check.stack_up} == {job.name for job in STACK_JOBS}


@pytest.mark.parametrize(
    ("job", "query"),
    [
        ("postgres", 'pg_up{job="postgres"} == 1'),
        ("postgres", 'pg_settings_max_connections{job="postgres"} > 0'),
        ("redis", 'redis_up{job="redis"} == 1'),
        ("redis", 'redis_memory_max_bytes{job="redis"} == 268435456'),
        ("minio", 'minio_cluster_nodes_online_total{job="minio"} >= 1'),
        ("livekit", 'livekit_room_total{job="livekit"} >= 0'),
        ("victoriametrics", 'vm_app_uptime_seconds{job="victoriametrics"} > 0'),
        ("vmalert", 'vmalert_alerts_fired_total{job="vmalert"} >= 0'),
    ],
)
def test_key_series_of_each_backing_service(store: MetricsStore, job: str, query: str) -> None:
    _until(f"{query} to hold", lambda: store.query(query), timeout=60)


def test_inv_metrics_prints_every_target(layer: Stack) -> None:
    result = run_inv("metrics")
    assert result.returncode == 0, result.stdout + result.stderr
    for job in STACK_JOBS:
        assert job.name in result.stdout
    assert "connections" in result.stdout and "memory" in result.stdout


def test_smoke_checks_the_targets(layer: Stack) -> None:
    result = run_inv("smoke", "--junit", "reports/junit-smoke-observability.xml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "metrics targets up" in result.stdout


def test_stopped_exporter_goes_down_and_the_down_alert_fires(
    layer: Stack, store: MetricsStore
) -> None:
    layer.stop(["redis-exporter"])
    try:
        _until(
            "up{job=redis} == 0",
            lambda: store.query('up{job="redis"} == 0'),
            timeout=60,
        )
        alert = _until(
            "TargetDown firing for job redis",
            lambda: [
                a
                for a in store.alerts()
                if a.name == "TargetDown" and a.state == "firing" and a.labels.get("job") == "redis"
            ],
            timeout=120,
        )
        assert alert[0].labels["severity"] == "critical"
    finally:
        layer.docker.compose.start(["redis-exporter"])
    _until("redis target back up", lambda: store.query('up{job="redis"} == 1'), timeout=60)


def test_a_nearly_full_volume_fires_the_disk_alert(
    layer: Stack, store: MetricsStore, tmp_path: Path
) -> None:
    # A small tmpfs volume, mounted into node-exporter like the data volumes
    # and filled to 93 %: the host's disk is never touched.
    volume = "disk-probe"
    override = tmp_path / "disk-probe.yaml"
    override.write_text(
        json.dumps(
            {
                "services": {"node-exporter": {"volumes": [f"{volume}:/volumes/{volume}:ro"]}},
                "volumes": {
                    volume: {"driver_opts": {"type": "tmpfs", "device": "tmpfs", "o": "size=4m"}}
                },
            }
        )
    )
    probed = Stack(
        layer.settings,
        layer.paths,
        extra_env_files=layer.extra_env_files,
        extra_compose_files=[override],
    )
    mountpoint = f"/volumes/{volume}"
    probed.docker.compose.up(["node-exporter"], detach=True)
    try:
        image = layer.docker.container.inspect(f"{layer.project_name}-node-exporter-1").config.image
        layer.docker.run(
            image,
            ["if=/dev/zero", "of=/v/fill", "bs=4096", "count=950"],
            entrypoint="dd",
            user="0",
            volumes=[(f"{layer.project_name}_{volume}", "/v")],
            remove=True,
        )
        # The first sample may be a scrape from before the fill: wait for one after it.
        _until(
            "the probe volume's free space under 10 % in a scrape",
            lambda: [
                s
                for s in store.query(f'node_filesystem_avail_bytes{{mountpoint="{mountpoint}"}}')
                if s.value < 0.1 * 4 * 1024 * 1024
            ],
            timeout=60,
        )
        alert = _until(
            "VolumeDiskNearlyFull firing for the probe volume",
            lambda: [
                a
                for a in store.alerts()
                if a.name == "VolumeDiskNearlyFull"
                and a.state == "firing"
                and a.labels.get("mountpoint") == mountpoint
            ],
            timeout=180,
        )
        assert alert[0].labels["severity"] == "critical"
        # The real volumes, on a disk with room, do not fire.
        assert not [
            a
            for a in store.alerts()
            if a.name == "VolumeDiskNearlyFull" and a.labels.get("mountpoint") != mountpoint
        ]
    finally:
        layer.docker.compose.up(["node-exporter"], detach=True)
        layer.docker.volume.remove(f"{layer.project_name}_{volume}")
    _until(
        "the probe volume gone from the store",
        lambda: not store.query(f'node_filesystem_avail_bytes{{mountpoint="{mountpoint}"}}'),
        timeout=60,
    )


class _Metrics(http.server.BaseHTTPRequestHandler):
    body = b"# TYPE infra_test_probe gauge\ninfra_test_probe 42\n"

    def do_GET(self) -> None:
        if self.path != "/probe/metrics":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        return


def test_manifest_service_on_the_host_is_scraped(
    layer: Stack, store: MetricsStore, env_dir: Path
) -> None:
    # Bound to the address host.docker.internal has in the metrics store's
    # container (host-gateway: Docker's bridge), not 0.0.0.0, so only the
    # containers reach it.
    gateway = host_gateway_address(layer, "victoriametrics")
    server = http.server.ThreadingHTTPServer((gateway, 0), _Metrics)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    manifest = parse_manifest(
        {
            "services": {
                "probe-service": {
                    "metrics": {"port": port, "path": "/probe/metrics", "interval": "2s"}
                }
            }
        },
        path="probe.toml",
    )
    try:
        assert prepare(layer, manifest, env_dir).scrape_changed
        assert reload(layer)
        sample = _until(
            "infra_test_probe scraped from the host",
            lambda: store.query('infra_test_probe{job="probe-service", service="probe-service"}'),
            timeout=60,
        )
        assert sample[0].value == 42
        assert sample[0].labels["layer"] == "service"
    finally:
        server.shutdown()
        server.server_close()
        prepare(layer, load_manifest(ROOT / "infra.toml"), env_dir)
        reload(layer)


def test_concurrent_prepares_keep_their_own_candidate_config(layer: Stack, env_dir: Path) -> None:
    # Parallel `inv provision` runs each check a candidate; a shared scratch
    # folder let one run delete another's file while VictoriaMetrics read it.
    manifest = load_manifest(ROOT / "infra.toml")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            prepare(layer, manifest, env_dir, dry_run=True)
        except BaseException as exc:  # noqa: BLE001 - collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert not list(LayerPaths(env_dir).root.glob("check*")), "scratch folders left behind"


def test_server_checker_rejects_a_bad_scrape_config(layer: Stack, tmp_path: Path) -> None:
    bad = tmp_path / "scrape.yml"
    bad.write_text('{"scrape_configs": [{"job_name": "x", "static_configs": [{"targetz": []}]}]}')
    with pytest.raises(ConfigError, match="rejects the generated scrape config"):
        check_scrape_config(layer, bad)


def _secrets(env_dir: Path) -> dict[str, str]:
    return parse_env_lines(LayerPaths(env_dir).secrets_env.read_text())


def test_postgres_monitor_role_cannot_read_service_data(layer: Stack, env_dir: Path) -> None:
    settings = layer.settings
    password = _secrets(env_dir)["INFRA_MONITOR_POSTGRES_PASSWORD"]
    common = {
        "host": settings.infra_public_host,
        "port": settings.postgres_port,
        "user": POSTGRES_MONITOR_ROLE,
        "password": password,
        "connect_timeout": 5,
    }
    with psycopg.connect(**common, dbname=settings.postgres_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()
        flags = conn.execute(
            "SELECT rolsuper, pg_has_role(current_user, 'pg_read_all_data', 'MEMBER') "
            "FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert flags == (False, False)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT rolpassword FROM pg_authid")
    # A service table, written by the service's own role.
    board = parse_env_lines((env_dir / "board-service.env").read_text())
    with psycopg.connect(board["DATABASE_URL"]) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS monitor_probe (secret text)")
        conn.execute("INSERT INTO monitor_probe VALUES ('service data')")
    try:
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(**common, dbname="board_db")
    finally:
        with psycopg.connect(board["DATABASE_URL"]) as conn:
            conn.execute("DROP TABLE monitor_probe")


def test_redis_monitor_user_cannot_touch_keys_or_channels(layer: Stack, env_dir: Path) -> None:
    settings = layer.settings
    admin = redis.Redis(
        host=settings.infra_public_host,
        port=settings.redis_port,
        password=settings.secret("redis_password"),
        db=1,
    )
    monitor = redis.Redis(
        host=settings.infra_public_host,
        port=settings.redis_port,
        username=REDIS_MONITOR_USER,
        password=_secrets(env_dir)["INFRA_MONITOR_REDIS_PASSWORD"],
        db=0,
    )
    admin.set("monitor-probe", "service data")
    try:
        assert monitor.ping()
        assert "used_memory" in monitor.info("memory")
        for command in (
            ("GET", "monitor-probe"),
            ("SET", "monitor-probe", "x"),
            ("KEYS", "*"),
            ("SCAN", "0"),
            ("CONFIG", "GET", "*"),
            ("PUBLISH", "events", "x"),
            ("FLUSHALL",),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                monitor.execute_command(*command)
    finally:
        admin.delete("monitor-probe")
        admin.close()
        monitor.close()


def test_monitoring_secrets_are_private_and_not_in_the_containers_config(
    layer: Stack, env_dir: Path
) -> None:
    path = LayerPaths(env_dir).secrets_env
    assert path.stat().st_mode & 0o777 == 0o600
    secrets = _secrets(env_dir)
    for service in ("postgres-exporter", "redis-exporter", "victoriametrics"):
        container = layer.docker.container.inspect(f"{layer.project_name}-{service}-1")
        visible = " ".join([*(container.config.env or []), *(container.config.cmd or [])])
        visible += " " + " ".join(container.args or [])
        for key in (
            "INFRA_MONITOR_POSTGRES_PASSWORD",
            "INFRA_MONITOR_REDIS_PASSWORD",
            "INFRA_MONITOR_MINIO_TOKEN",
        ):
            assert secrets[key] not in visible, (service, key)


def test_lost_credentials_are_made_again_and_the_exporters_get_them(
    layer: Stack, store: MetricsStore, env_dir: Path
) -> None:
    secrets = LayerPaths(env_dir).secrets_env
    old = _secrets(env_dir)["INFRA_MONITOR_POSTGRES_PASSWORD"]
    secrets.unlink()
    result = run_inv("up")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert _secrets(env_dir)["INFRA_MONITOR_POSTGRES_PASSWORD"] != old
    changed_at = time.time()
    # Compose copies secrets only into new containers: the exporters were
    # made again with the new passwords, so they log in. Only samples
    # scraped after the change count.
    _until("every stack target up again", lambda: check_targets(store).ok, timeout=90)
    for series in ('pg_up{job="postgres"}', 'redis_up{job="redis"}'):
        fresh = _until(
            f"a sample of {series} scraped after the change",
            lambda series=series: store.query(f"{series} and timestamp({series}) > {changed_at}"),
            timeout=60,
        )
        assert fresh[0].value == 1, f"{series} is {fresh[0].value}: the exporter cannot log in"


def test_an_experiment_report_carries_the_metrics_and_logs_of_its_window(
    layer: Stack, store: MetricsStore, tmp_path: Path
) -> None:
    from infra_lib.chaos import FaultLedger, run_experiment
    from infra_lib.chaos.window import observe_window

    # Up long enough that the restart shows as a drop in its uptime.
    _until("redis up for 15 s", lambda: (store.value("max(redis_uptime_in_seconds)") or 0) >= 15)
    report = run_experiment(
        layer, FaultLedger(tmp_path / "active.json"), "kill", "redis", duration=2.0
    )
    assert report.recovered, report.events
    window = observe_window(
        layer.settings, layer.project_name, "kill", "redis", fault_at=report.started_at
    )
    assert window.end > report.started_at and not any("not read" in n for n in window.notes)
    uptime = next(m for m in window.metrics if m.label == "uptime s")
    values = [value for _, value in uptime.changes]
    assert any(later < earlier for earlier, later in itertools.pairwise(values)), uptime
    # Its start-up lines after the crash, and the lead-in before the fault.
    assert any("Ready to accept connections" in line for line in window.logs), window.logs
    assert uptime.changes[0][0] < 0
    assert any(line.startswith("redis_up: ") for line in window.lines())


def test_metrics_task_says_how_to_turn_the_layer_on(throwaway_env: Path) -> None:
    result = run_inv("metrics", env_file=throwaway_env)
    assert result.returncode == 2
    assert "inv up --with observability" in result.stderr


@pytest.mark.lifecycle
def test_down_removes_a_layer_switched_off_while_running(throwaway_env: Path) -> None:
    from infra_lib.stack.envfile import set_env_value
    from tests.integration.conftest import free_port, isolated_environ

    set_env_value(throwaway_env, "METRICS_PORT", str(free_port()))
    up = run_inv(
        "up", "--with", "observability", "--service", "victoriametrics", env_file=throwaway_env
    )
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    settings = load_stack_settings(throwaway_env, environ=isolated_environ())
    stack = Stack(settings, StackPaths.for_root(ROOT, throwaway_env))
    assert [s.name for s in stack.status(["victoriametrics"]) if s.ok] == ["victoriametrics"]
    # Switched off by hand in .env while its container runs.
    set_env_value(throwaway_env, "INFRA_PROFILES", "")
    down = run_inv("down", "--volumes", "--yes", env_file=throwaway_env)
    assert down.returncode == 0, down.stdout + down.stderr
    project = settings.compose_project_name
    left = stack.docker.container.list(
        all=True, filters=[("label", f"com.docker.compose.project={project}")]
    )
    assert left == []
    assert stack.volumes() == []
