"""Network faults through the `chaos` profile's proxy: measured by a real client."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from infra_lib.chaos import (
    ExperimentReport,
    FaultLedger,
    LeftoverFault,
    NetworkParams,
    Toxiproxy,
    proxied_settings,
    run_experiment,
)
from infra_lib.chaos.network import apply_network_fault
from infra_lib.observability.layer import LayerPaths
from infra_lib.provisioning import read_service_env
from infra_lib.stack.compose import Stack, StackPaths
from infra_lib.stack.settings import load_stack_settings
from tests.integration.conftest import ROOT, run_inv


def _stack() -> Stack:
    paths = StackPaths.for_root(ROOT)
    settings = load_stack_settings(paths.env_file, environ=os.environ)
    env_dir = ROOT / "env" / settings.compose_project_name
    return Stack(settings, paths, extra_env_files=[LayerPaths(env_dir).secrets_env])


@pytest.fixture(scope="module")
def proxied() -> Iterator[Stack]:
    was_on = "chaos" in _stack().settings.profiles
    if not was_on:
        result = run_inv("up", "--with", "chaos", "--no-provision")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    yield _stack()
    if not was_on:
        result = run_inv("up", "--without", "chaos", "--no-provision")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _connect(stack: Stack) -> psycopg.Connection[Any]:
    settings = proxied_settings(stack.settings, "postgres")
    return psycopg.connect(
        host=settings.infra_public_host,
        port=settings.postgres_port,
        user=settings.postgres_user,
        password=settings.secret("postgres_password"),
        dbname=settings.postgres_db,
        connect_timeout=10,
        autocommit=True,
    )


def _round_trip(conn: psycopg.Connection[Any]) -> float:
    started = time.perf_counter()
    conn.execute("SELECT 1").fetchone()
    return time.perf_counter() - started


class _Background:
    """An experiment in a thread, so the test can be the client meanwhile."""

    def __init__(self, run: Callable[[Any], ExperimentReport]) -> None:
        self.applied = threading.Event()
        self.report: ExperimentReport | None = None
        self.error: BaseException | None = None

        def on_event(event: Any) -> None:
            if event.kind == "applied":
                self.applied.set()

        def target() -> None:
            try:
                self.report = run(on_event)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test
                self.error = exc
                self.applied.set()

        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()
        assert self.applied.wait(30), "the fault was never applied"
        if self.error is not None:
            raise self.error

    def result(self) -> ExperimentReport:
        self._thread.join(120)
        if self.error is not None:
            raise self.error
        assert self.report is not None, "the experiment did not end"
        return self.report


def _no_toxics(stack: Stack) -> None:
    proxies = Toxiproxy.from_settings(stack.settings).proxies()
    assert proxies["postgres"]["enabled"] is True
    assert proxies["postgres"]["toxics"] == []


def test_added_latency_is_what_the_client_measures_and_goes_with_the_rollback(
    proxied: Stack, tmp_path: Path
) -> None:
    with _connect(proxied) as conn:
        before = statistics.median(_round_trip(conn) for _ in range(5))
        running = _Background(
            lambda on_event: run_experiment(
                proxied,
                FaultLedger(tmp_path / "active.json"),
                "latency",
                "postgres",
                duration=3,
                network=NetworkParams(latency_ms=300),
                on_event=on_event,
            )
        )
        during = [_round_trip(conn) for _ in range(3)]
        report = running.result()
        after = statistics.median(_round_trip(conn) for _ in range(5))
    # One answer per query, each held 300 ms; the rest is the machine's noise.
    assert all(0.3 <= t < 0.3 + before + 0.5 for t in during), (before, during)
    assert after < before + 0.1, (before, after)
    assert report.recovered, report.events
    assert report.first("applied") is not None
    assert "latency 300 ms" in report.events[0].detail
    _no_toxics(proxied)


def test_a_cut_fails_the_query_and_a_new_connection_works_after(
    proxied: Stack, tmp_path: Path
) -> None:
    with _connect(proxied) as conn:
        conn.execute("CREATE TEMP TABLE kept (n int)")
        running = _Background(
            lambda on_event: run_experiment(
                proxied,
                FaultLedger(tmp_path / "active.json"),
                "cut",
                "postgres",
                duration=2,
                on_event=on_event,
            )
        )
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1").fetchone()
        with pytest.raises(psycopg.OperationalError):
            _connect(proxied).close()
        report = running.result()
    assert report.recovered, report.events
    failed = report.first("probe_failed")
    assert failed is not None and failed.at < 1.5, report.events
    with _connect(proxied) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    _no_toxics(proxied)


def test_a_leftover_network_fault_is_undone_by_recover(proxied: Stack) -> None:
    # What a run killed mid-experiment leaves: the toxic on, the ledger written.
    ledger = FaultLedger(ROOT / "env" / proxied.project_name / "chaos" / "active.json")
    toxiproxy = proxied.container("toxiproxy")
    ledger.record(
        LeftoverFault(
            "latency",
            "postgres",
            str(toxiproxy.id),
            proxied.project_name,
            datetime.now(UTC).isoformat(timespec="seconds"),
            999_999,
        )
    )
    api = Toxiproxy.from_settings(proxied.settings)
    with _connect(proxied) as conn:
        apply_network_fault(api, "latency", "postgres", NetworkParams(latency_ms=2000))
        assert _round_trip(conn) >= 2.0
    result = run_inv("chaos", "--recover")
    assert result.returncode == 0, result.stderr
    assert "undid a fault left by an earlier run: latency of postgres" in result.stdout
    assert "toxic removed" in result.stdout
    assert not ledger.path.exists()
    _no_toxics(proxied)


def test_a_network_fault_on_a_service_without_a_proxy_is_refused(proxied: Stack) -> None:
    result = run_inv("chaos", "--fault", "latency", "--service", "livekit", "--duration", "1")
    assert result.returncode != 0
    assert "'livekit' has none" in result.stderr


def test_a_service_provisioned_through_the_proxy_sees_its_faults(
    proxied: Stack, tmp_path: Path
) -> None:
    env_dir = ROOT / "env" / proxied.project_name
    settings = proxied.settings
    try:
        result = run_inv("provision", "--through-proxy", "board-service")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        env = read_service_env(env_dir, "board-service").values
        assert f":{settings.toxiproxy_postgres_port}/" in env["DATABASE_URL"]
        assert f":{settings.toxiproxy_redis_port}/" in env["REDIS_URL"]
        assert env["S3_ENDPOINT"].endswith(f":{settings.toxiproxy_minio_port}")
        with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
            running = _Background(
                lambda on_event: run_experiment(
                    proxied,
                    FaultLedger(tmp_path / "active.json"),
                    "latency",
                    "postgres",
                    duration=2,
                    network=NetworkParams(latency_ms=400),
                    on_event=on_event,
                )
            )
            assert _round_trip(conn) >= 0.4
            assert running.result().recovered
        user = redis.Redis.from_url(env["REDIS_URL"])
        assert user.ping()
    finally:
        back = run_inv("provision", "--service", "board-service")
        assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-3000:]
    env = read_service_env(env_dir, "board-service").values
    assert f":{settings.postgres_port}/" in env["DATABASE_URL"]
