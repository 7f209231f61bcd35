"""The pytest plugin: two xdist workers, isolated resources, all cleaned up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra_lib.postgres.config import PostgresConfig
from infra_lib.redis.allocator import RedisDbAllocator
from infra_lib.redis.config import RedisConfig
from infra_lib.stack.settings import StackSettings
from infra_lib.storage.config import S3Config

from .conftest import ROOT

pytestmark = pytest.mark.integration


def test_example_service_suite_runs_isolated_under_xdist(
    settings: StackSettings, tmp_path: Path
) -> None:
    env = {**os.environ, "EXAMPLE_RECORD_DIR": str(tmp_path), "INFRA_ENV_FILE": str(ROOT / ".env")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-n",
            "2",
            "-p",
            "no:cacheprovider",
            "-q",
            str(ROOT / "tests" / "example_service" / "check_isolation.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    records = [json.loads(p.read_text()) for p in tmp_path.glob("gw*.json")]
    assert len(records) == 2, result.stdout
    assert records[0]["database"] != records[1]["database"]
    assert records[0]["redis_db"] != records[1]["redis_db"]

    # Everything the workers made is gone.
    import psycopg

    with psycopg.connect(**PostgresConfig.from_stack(settings).connect_kwargs()) as conn:
        names = {r["database"] for r in records} | {r["role"] for r in records}
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s) "
            "UNION ALL SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
            [list(names), list(names)],
        ).fetchall()
    assert left == []
    with RedisDbAllocator(RedisConfig.from_stack(settings)) as allocator:
        owners = set(allocator.list())
    assert not owners & {r["owner"] for r in records}
    assert records[0]["prefix"] != records[1]["prefix"]
    client = S3Config.from_stack(settings).client()
    for record in records:
        assert list(client.list_objects("infra-tests", prefix=record["prefix"])) == []
