"""The fault ledger and the experiment's argument checks (no Docker needed)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from infra_lib.chaos import (
    FAULTS,
    NETWORK_FAULTS,
    FaultLedger,
    LeftoverFault,
    NetworkParams,
    ResourceParams,
    not_local,
    proxied_settings,
    require_local,
    run_experiment,
)
from infra_lib.errors import ConfigError
from infra_lib.stack.settings import StackSettings, load_stack_settings


def test_the_ledger_is_private_and_round_trips(tmp_path: Path) -> None:
    ledger = FaultLedger(tmp_path / "chaos" / "active.json")
    fault = LeftoverFault("pause", "redis", "abc123", "infra", "2026-12-04T00:00:00+00:00", 42)
    ledger.record(fault)
    assert stat.S_IMODE(ledger.path.stat().st_mode) == 0o600
    assert ledger.read() == fault
    ledger.clear()
    assert ledger.read() is None


def test_an_unreadable_ledger_names_its_file(tmp_path: Path) -> None:
    path = tmp_path / "active.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=str(path)):
        FaultLedger(path).read()


@pytest.mark.parametrize(
    ("fault", "duration", "message"),
    [
        ("melt", 1.0, "unknown fault 'melt'"),
        ("pause", 0.0, "--duration"),
        ("stop", 1e6, "--duration"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_touched(
    tmp_path: Path, fault: str, duration: float, message: str
) -> None:
    stack: Any = None
    with pytest.raises(ConfigError, match=message):
        run_experiment(stack, FaultLedger(tmp_path / "l.json"), fault, "redis", duration=duration)


def _settings(tmp_path: Path) -> StackSettings:
    env = tmp_path / ".env"
    env.write_text("")
    return load_stack_settings(env, environ={"TOXIPROXY_POSTGRES_PORT": "25432"})


def test_a_client_routed_through_the_proxy_gets_its_port(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    routed = proxied_settings(settings, "postgres")
    assert routed.postgres_port == 25432
    assert routed.redis_port == settings.redis_port
    with pytest.raises(ConfigError, match="'livekit' has none"):
        proxied_settings(settings, "livekit")


@pytest.mark.parametrize(
    ("fault", "toxic"),
    [
        ("latency", ("latency", {"latency": 250, "jitter": 20})),
        ("bandwidth", ("bandwidth", {"rate": 8})),
        ("timeout", ("timeout", {"timeout": 100})),
        ("reset", ("reset_peer", {"timeout": 100})),
        ("cut", None),
    ],
)
def test_each_network_fault_is_one_toxic_or_the_proxy_off(fault: str, toxic: object) -> None:
    params = NetworkParams(latency_ms=250, jitter_ms=20, rate_kbps=8, after_ms=100)
    assert params.toxic(fault) == toxic
    assert set(NETWORK_FAULTS) <= set(FAULTS)


@pytest.mark.parametrize(
    ("params", "flag"),
    [
        (NetworkParams(latency_ms=-1), "--latency-ms"),
        (NetworkParams(jitter_ms=10**9), "--jitter-ms"),
        (NetworkParams(after_ms=-5), "--after-ms"),
        (NetworkParams(rate_kbps=0), "--rate-kbps"),
    ],
)
def test_network_values_nobody_means_are_refused_before_anything_is_touched(
    tmp_path: Path, params: NetworkParams, flag: str
) -> None:
    stack: Any = None
    with pytest.raises(ConfigError, match=flag):
        run_experiment(
            stack,
            FaultLedger(tmp_path / "l.json"),
            "latency",
            "postgres",
            duration=1,
            network=params,
        )


def test_through_proxy_needs_the_chaos_layer_and_the_stacks_own_servers(
    tmp_path: Path,
) -> None:
    from invoke.exceptions import Exit

    import tasks

    off = _settings(tmp_path)
    with pytest.raises(Exit, match="`inv up --with chaos` first"):
        tasks._proxied(off)
    managed = off.model_copy(update={"infra_profiles": "chaos", "postgres_host": "db.example"})
    with pytest.raises(Exit, match="POSTGRES_HOST"):
        tasks._proxied(managed)
    routed = tasks._proxied(off.model_copy(update={"infra_profiles": "chaos"}))
    assert (routed.postgres_port, routed.redis_port, routed.minio_api_port) == (
        25432,
        off.toxiproxy_redis_port,
        off.toxiproxy_minio_port,
    )


def test_an_old_ledger_without_undo_data_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "active.json"
    path.write_text(
        '{"fault": "pause", "service": "redis", "container_id": "abc", "project": "infra",'
        ' "started": "2026-12-04T00:00:00+00:00", "runner_pid": 7}'
    )
    leftover = FaultLedger(path).read()
    assert leftover is not None
    assert leftover.undo == {}


@pytest.mark.parametrize(
    ("params", "flag"),
    [
        (ResourceParams(cpus=0), "--cpus"),
        (ResourceParams(memory_mb=2), "--memory-mb"),
        (ResourceParams(workers=0), "--workers"),
    ],
)
def test_resource_values_nobody_means_are_refused(params: ResourceParams, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        params.check()


def test_a_stack_that_is_not_local_needs_yes_production(tmp_path: Path) -> None:
    local = _settings(tmp_path)
    assert not_local(local, {}) == []
    assert not_local(local, {"DOCKER_HOST": "unix:///var/run/docker.sock"}) == []
    assert not_local(local, {"DOCKER_HOST": "tcp://127.0.0.1:2375"}) == []
    remote = local.model_copy(update={"postgres_host": "db.prod.example"})
    reasons = not_local(remote, {"DOCKER_HOST": "ssh://ops@prod.example"})
    assert [r.split("=")[0] for r in reasons] == ["DOCKER_HOST", "POSTGRES_HOST"]
    with pytest.raises(ConfigError, match="--yes-production"):
        require_local(remote, {}, yes_production=False)
    require_local(remote, {}, yes_production=True)


def test_every_fault_is_named_in_the_chaos_help() -> None:
    # Read the source: other tests load tasks.py into an invoke collection,
    # which may rewrite the task's help mapping in place.
    from pathlib import Path

    source = (Path(__file__).parents[2] / "tasks.py").read_text()
    start = source.index('"fault": "')
    text = source[start : source.index("}", start)]
    for fault in FAULTS:
        assert fault in text, fault


def test_a_volume_counts_as_full_under_two_percent_or_a_mebibyte_free() -> None:
    from infra_lib.chaos.disk import VolumeUsage

    assert VolumeUsage("/data", 100 * 2**20, 2**20).full
    assert not VolumeUsage("/data", 100 * 2**20, 3 * 2**20).full
    assert VolumeUsage("/data", 10 * 2**30, 100 * 2**20).full
    assert VolumeUsage("/data", 4 * 2**20, 2**19).full
    assert VolumeUsage("/data", 128_000_000, 400_000).describe() == "0.4 MB free of 128.0 MB"


def test_disk_full_refuses_a_service_without_data_and_a_size_out_of_bounds() -> None:
    from typing import Any, cast

    from infra_lib.chaos.disk import prepare_disk_fault

    nothing = cast(Any, None)
    with pytest.raises(ConfigError, match="--size-mb"):
        prepare_disk_fault(nothing, "postgres", nothing, 0)
    with pytest.raises(ConfigError, match="data volume"):
        prepare_disk_fault(nothing, "livekit", nothing, 64)


def test_the_disk_rollback_deletes_only_a_file_named_as_the_filler() -> None:
    from typing import Any, cast

    from infra_lib.chaos.disk import undo_disk_fault
    from infra_lib.errors import StackError

    with pytest.raises(StackError, match="by hand"):
        undo_disk_fault(cast(Any, None), "abc", {"filler": "/var/lib/postgresql/data"})


# -- gateway-502 ---------------------------------------------------------------


def _reference_manifest() -> Any:
    from infra_lib.manifest import load_manifest

    return load_manifest(Path(__file__).parents[2] / "infra.toml")


def test_gateway_502_reaches_a_manifest_service_on_its_route_and_minio_on_its_name(
    tmp_path: Path,
) -> None:
    from infra_lib.chaos.gateway import gateway_target

    settings = _settings(tmp_path)
    manifest = _reference_manifest()
    board = gateway_target(settings, manifest, "board-service")
    # Its health path is the upstream's own, not one the gateway routes.
    assert (board.host, board.path, board.routes) == ("localhost", "/api/boards", ("/api/boards",))
    chat = gateway_target(settings, manifest, "chat-service")
    assert chat.path.startswith("/api") or chat.path.startswith("/ws")
    minio = gateway_target(settings, None, "minio")
    assert (minio.host, minio.path) == ("s3.localhost", "/minio/health/live")
    with pytest.raises(ConfigError, match=r"no route of the gateway leads to 'redis'.*minio"):
        gateway_target(settings, manifest, "redis")


def test_gateway_502_breaks_only_the_services_upstreams(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from infra_lib.chaos.gateway import DEAD_UPSTREAM, _broken_config
    from infra_lib.gateway.apply import render_for

    stack: Any = SimpleNamespace(settings=_settings(tmp_path))
    manifest = _reference_manifest()
    normal = render_for(stack, manifest)
    broken = _broken_config(stack, manifest, "minio")
    changed = [
        (old, new)
        for old, new in zip(normal.splitlines(), broken.splitlines(), strict=True)
        if old != new
    ]
    changed = [(old.strip(), new.strip()) for old, new in changed]
    assert changed == [("server minio:9000 max_fails=0;", f"server {DEAD_UPSTREAM} max_fails=0;")]
    board = _broken_config(stack, manifest, "board-service")
    assert f"server {DEAD_UPSTREAM} max_fails=0;" in board
    assert "server minio:9000 max_fails=0;" in board


def test_gateway_502_rollback_keeps_a_config_applied_since_the_fault(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from infra_lib.chaos.gateway import _digest, gateway_paths, undo_gateway_fault

    stack: Any = SimpleNamespace(paths=SimpleNamespace(root=tmp_path), project_name="p")
    config = gateway_paths(stack).config_file
    config.parent.mkdir(parents=True)
    undo = {"config": "before\n", "broken": "broken\n", "broken_sha256": _digest("broken\n")}
    config.write_text("newer\n")
    assert "newer one is kept" in undo_gateway_fault(stack, undo)
    assert config.read_text() == "newer\n"
    config.write_text("before\n")
    assert "still has the config from before" in undo_gateway_fault(stack, undo)


# -- the stores' window ----------------------------------------------------------


def test_a_window_keeps_only_the_points_where_a_series_changed() -> None:
    from infra_lib.chaos.window import MetricLine, change_points
    from infra_lib.observability.store import Series

    series = [Series({}, [(100.0, 1.0), (101.0, 1.0), (104.0, 0.0), (105.0, 0.0), (110.0, 1.0)])]
    changes = change_points(series, fault_at=102.0)
    assert changes == [(-2.0, 1.0), (2.0, 0.0), (8.0, 1.0)]
    assert MetricLine("pg_up", "max(pg_up)", changes).describe() == (
        "pg_up: 1 (-2.0 s), 0 (+2.0 s), 1 (+8.0 s)"
    )
    assert MetricLine("pg_up", "max(pg_up)", []).describe() == "pg_up: no samples in the window"


def test_the_window_asks_the_log_store_for_the_service_or_the_gateways_lines() -> None:
    from infra_lib.chaos.window import _log_query, _queries, _seconds_after

    own = _log_query("infra", "kill", "redis", 0.0, 1.5)
    assert own == (
        '{compose.project="infra",compose.service="redis"} '
        "_time:[1970-01-01T00:00:00.000Z, 1970-01-01T00:00:01.500Z] | sort by (_time)"
    )
    gateway = _log_query("infra", "gateway-502", "board-service", 0.0, 1.0)
    assert 'compose.service="gateway"' in gateway and '"service=board-service"' in gateway
    assert any("/volumes/postgres-data" in query for _, query in _queries("disk-full", "postgres"))
    assert _seconds_after("1970-01-01T00:00:03.250000000Z", 1.0) == "+2.2 s"
    assert _seconds_after("garbage", 1.0) == "garbage"
