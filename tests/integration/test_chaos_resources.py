"""Resource faults and the restart loop on the running stack, measured from outside."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import psycopg

from infra_lib.chaos import FaultLedger, LeftoverFault, ResourceParams, run_experiment
from infra_lib.chaos.resources import apply_resource_fault, prepare_resource_fault
from infra_lib.redis.config import RedisConfig
from infra_lib.stack.compose import Stack
from tests.integration.conftest import ROOT, run_inv
from tests.integration.test_chaos_network import _Background

# CPU-bound and short: a count over generated rows, no I/O.
_BUSY = "SELECT count(*) FROM generate_series(1, 1500000)"


def _timed_query(stack: Stack) -> float:
    s = stack.settings
    with psycopg.connect(
        host=s.infra_public_host,
        port=s.postgres_port,
        user=s.postgres_user,
        password=s.secret("postgres_password"),
        dbname=s.postgres_db,
        autocommit=True,
        connect_timeout=10,
    ) as conn:
        started = time.perf_counter()
        conn.execute(_BUSY).fetchone()
        return time.perf_counter() - started


def _load_processes(stack: Stack, service: str) -> int:
    # /proc, not ps: the images need not have procps.
    script = "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f 2>/dev/null; echo; done"
    rows = stack.docker.container.execute(stack.container(service), ["sh", "-c", script])
    return sum(line.startswith("timeout ") for line in str(rows).splitlines())


def _limits(stack: Stack, service: str) -> tuple[int, int]:
    host = stack.docker.container.inspect(stack.container(service).id).host_config
    return int(host.nano_cpus or 0), int(host.memory or 0)


def test_a_cpu_limit_slows_cpu_bound_queries_and_is_lifted_by_the_rollback(
    stack: Stack, tmp_path: Path
) -> None:
    before = statistics.median(_timed_query(stack) for _ in range(3))
    running = _Background(
        lambda on_event: run_experiment(
            stack,
            FaultLedger(tmp_path / "active.json"),
            "cpu-limit",
            "postgres",
            duration=8,
            resources=ResourceParams(cpus=0.05),
            on_event=on_event,
        )
    )
    assert _limits(stack, "postgres")[0] == 50_000_000
    during = _timed_query(stack)
    report = running.result()
    assert report.recovered, report.events
    after = statistics.median(_timed_query(stack) for _ in range(3))
    # 5 % of one CPU: many times slower; a loose bound, the machine is shared.
    assert during > 3 * before, (before, during)
    assert after < 2 * before + 0.05, (before, after)
    nano_cpus, _ = _limits(stack, "postgres")
    assert nano_cpus == 0 or nano_cpus >= 1_000_000_000


def test_memory_pressure_is_held_inside_the_container_and_stopped_by_the_rollback(
    stack: Stack, tmp_path: Path
) -> None:
    container = stack.container("redis")

    def used() -> int:
        stats = stack.docker.container.stats(container)[0]
        return int(stats.memory_used or 0)

    idle = used()
    running = _Background(
        lambda on_event: run_experiment(
            stack,
            FaultLedger(tmp_path / "active.json"),
            "memory-pressure",
            "redis",
            duration=6,
            resources=ResourceParams(memory_mb=96),
            on_event=on_event,
        )
    )
    deadline = time.monotonic() + 5
    peak = idle
    while time.monotonic() < deadline and peak < idle + 80 * 1024 * 1024:
        peak = max(peak, used())
    report = running.result()
    assert report.recovered, report.events
    assert peak >= idle + 80 * 1024 * 1024, (idle, peak)
    assert _load_processes(stack, "redis") == 0


def test_a_restart_loop_crashes_redis_again_and_it_comes_back_with_its_data(
    stack: Stack, tmp_path: Path
) -> None:
    admin = RedisConfig.from_stack(stack.settings).client(0)
    admin.set("chaos:loop", b"kept")
    time.sleep(1.5)
    report = run_experiment(
        stack,
        FaultLedger(tmp_path / "active.json"),
        "restart-loop",
        "redis",
        duration=9,
        every=4,
    )
    assert report.recovered, report.events
    kills = [e for e in report.events if e.kind == "applied"]
    assert len(kills) >= 2, report.events
    restarted = report.first("restarted")
    assert restarted is not None, report.events
    assert admin.get("chaos:loop") == b"kept"
    admin.delete("chaos:loop")


def test_a_limit_left_by_a_crashed_run_is_lifted_by_recover(stack: Stack) -> None:
    # What a run killed mid-experiment leaves: the ledger entry and the limit.
    container = stack.container("postgres")
    undo = prepare_resource_fault(stack, "cpu-limit", container)
    ledger = FaultLedger(ROOT / "env" / stack.project_name / "chaos" / "active.json")
    leftover: dict[str, Any] = {
        "fault": "cpu-limit",
        "service": "postgres",
        "container_id": str(container.id),
        "project": stack.project_name,
        "started": "2026-01-01T00:00:00+00:00",
        "runner_pid": 1,
        "undo": undo,
    }
    ledger.record(LeftoverFault(**leftover))
    apply_resource_fault(stack, "cpu-limit", container, ResourceParams(cpus=0.1), 5)
    assert _limits(stack, "postgres")[0] == 100_000_000
    result = run_inv("chaos", "--recover")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cpu-limit of postgres" in result.stdout
    assert _limits(stack, "postgres")[0] != 100_000_000
    assert ledger.read() is None
