"""Failure experiments against the running stack: real faults, real recovery."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from infra_lib.chaos import FaultLedger, run_experiment
from infra_lib.provisioning import read_service_env
from infra_lib.redis.config import RedisConfig
from infra_lib.stack.compose import Stack

from .conftest import ROOT


def _ledger(stack: Stack) -> Path:
    # Where the task keeps it: the project's env folder, whatever its name.
    return ROOT / "env" / stack.project_name / "chaos" / "active.json"


def _kinds(events: list[object]) -> list[str]:
    return [e.kind for e in events]  # type: ignore[attr-defined]


def _redis_state(stack: Stack) -> tuple[bool, bool]:
    state = stack.container("redis").state
    return bool(state.running), bool(state.paused)


def test_a_killed_redis_comes_back_by_its_restart_policy_with_data_and_users(
    stack: Stack, tmp_path: Path
) -> None:
    admin = RedisConfig.from_stack(stack.settings).client(0)
    admin.set("chaos:kept", b"before the crash")
    # appendfsync everysec: a write is on disk within a second.
    time.sleep(1.5)
    report = run_experiment(
        stack, FaultLedger(tmp_path / "active.json"), "kill", "redis", duration=3
    )
    assert report.recovered
    assert report.first("restarted") is not None, report.events
    assert admin.get("chaos:kept") == b"before the crash"
    env = read_service_env(ROOT / "env" / stack.project_name, "board-service").values
    user = redis.Redis.from_url(env["REDIS_URL"])
    assert user.ping()
    admin.delete("chaos:kept")


def test_a_stop_is_seen_by_the_probe_and_gives_the_same_timeline_twice(
    stack: Stack, tmp_path: Path
) -> None:
    ledger = FaultLedger(tmp_path / "active.json")
    first = run_experiment(stack, ledger, "stop", "postgres", duration=1.5)
    second = run_experiment(stack, ledger, "stop", "postgres", duration=1.5)
    for report in (first, second):
        assert report.recovered
        assert _kinds(report.events) == ["applied", "probe_failed", "rolled_back", "recovered"]
        failed = report.first("probe_failed")
        assert failed is not None and failed.at < 1.5
    assert not ledger.path.exists()


def _start_pause(duration: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "invoke",
            "chaos",
            "--fault",
            "pause",
            "--service",
            "redis",
            "--duration",
            duration,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert child.stdout is not None
    for line in child.stdout:
        if "applied" in line:
            return child
    child.wait(timeout=30)
    pytest.fail(f"inv chaos never applied its fault (rc {child.returncode})")


def test_ctrl_c_rolls_the_fault_back(stack: Stack) -> None:
    child = _start_pause("60")
    assert _redis_state(stack) == (True, True)
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 130, out
    assert "rolled back" in out
    assert _redis_state(stack) == (True, False)
    assert not _ledger(stack).exists()


def test_a_fault_left_by_a_killed_run_is_undone_by_the_next(stack: Stack) -> None:
    child = _start_pause("60")
    child.kill()
    child.wait(timeout=30)
    assert _redis_state(stack) == (True, True)
    assert _ledger(stack).exists()
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "chaos", "--recover"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "undid a fault left by an earlier run: pause of redis" in done.stdout
    assert _redis_state(stack) == (True, False)
    assert not _ledger(stack).exists()


def test_up_right_after_a_pause_waits_for_the_next_healthcheck(stack: Stack) -> None:
    # Docker marks a paused container unhealthy at once, and it stays so until
    # its next check after the unpause; `compose up --wait` gives up on it.
    for _ in range(3):
        stack.docker.container.pause(stack.container("redis"))
        time.sleep(0.5)
        stack.docker.container.unpause(stack.container("redis"))
        health = stack.container("redis").state.health
        if health is not None and health.status == "unhealthy":
            break
    else:
        pytest.fail("redis never looked unhealthy right after an unpause")

    statuses = stack.up(["redis"])

    assert [(s.name, s.ok) for s in statuses] == [("redis", True)]
