"""The smoke suite: passes on a healthy stack, pins failures on what is down."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import redis

from infra_lib.stack.compose import Stack, StackPaths
from infra_lib.stack.settings import StackSettings, load_stack_settings

from .conftest import ROOT, isolated_environ, run_inv

pytestmark = pytest.mark.integration


def _smoke_keys(settings: StackSettings) -> list[str]:
    found = []
    for db in range(settings.redis_databases - 1):
        client = redis.Redis(
            port=settings.redis_port, password=settings.secret("redis_password"), db=db
        )
        with client:
            # Under each service's prefix (board-service:smoke-...).
            found += [k.decode() for k in client.scan_iter("*smoke-*")]
    return found


def test_smoke_passes_on_the_healthy_stack_and_leaves_nothing(
    settings: StackSettings, tmp_path: Path
) -> None:
    junit = tmp_path / "smoke.xml"
    result = run_inv("smoke", "--junit", str(junit))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout
    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuite"
    assert int(suite.get("tests", "0")) >= 10
    assert suite.get("failures") == "0"
    assert _smoke_keys(settings) == []


def test_unknown_component_is_refused() -> None:
    result = run_inv("smoke", "--skip", "kafka")
    assert result.returncode == 2
    assert "unknown component" in result.stderr


def test_a_stopped_server_fails_exactly_its_checks(throwaway_env: Path, tmp_path: Path) -> None:
    up = run_inv("up", "--service", "postgres", "--service", "redis", env_file=throwaway_env)
    assert up.returncode == 0, up.stdout + up.stderr
    skip = ["--skip", "storage", "--skip", "livekit", "--skip", "coturn"]

    healthy = run_inv("smoke", *skip, "--junit", str(tmp_path / "a.xml"), env_file=throwaway_env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "skipped (not deployed): coturn, livekit, storage" in healthy.stdout

    settings = load_stack_settings(throwaway_env, environ=isolated_environ())
    Stack(settings, StackPaths.for_root(ROOT, throwaway_env)).stop(["redis"])
    junit = tmp_path / "b.xml"
    broken = run_inv("smoke", *skip, "--junit", str(junit), env_file=throwaway_env)
    assert broken.returncode == 1
    cases = ET.parse(junit).getroot().findall("testcase")
    failed = {c.get("classname") for c in cases if c.find("failure") is not None}
    passed = {c.get("classname") for c in cases if c.find("failure") is None}
    assert failed == {"smoke.redis"}
    assert passed == {"smoke.postgres"}
    assert "redis kv [board-service]: ConnectionError" in broken.stderr
    assert "postgres [" not in broken.stderr
