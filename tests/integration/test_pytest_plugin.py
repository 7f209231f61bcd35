"""The pytest plugin: isolated least-privilege resources, cleaned up even after SIGKILL."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest

from infra_lib.leases import LEASE_KEY
from infra_lib.manifest import load_manifest
from infra_lib.postgres.config import PostgresConfig
from infra_lib.postgres.provisioner import DatabaseSpec, PostgresProvisioner, RoleSpec
from infra_lib.redis.allocator import RedisDbAllocator
from infra_lib.redis.config import RedisConfig
from infra_lib.sessions import SessionNames, create_bucket_prefix, create_database, create_redis
from infra_lib.stack.settings import StackSettings
from infra_lib.storage.config import S3Config

from .conftest import ROOT, run_inv

pytestmark = pytest.mark.integration


EXAMPLES = ROOT / "tests" / "example_service"


@pytest.fixture
def foreign(settings: StackSettings) -> Iterator[dict[str, str]]:
    """A database, a Redis key and an object of someone else, for the fixtures to be refused."""
    tag = uuid4().hex[:10]
    name = f"foreign_{tag}"
    postgres = PostgresProvisioner(PostgresConfig.from_stack(settings))
    role = RoleSpec(name, uuid4().hex, service="foreign")
    postgres.ensure([role], [DatabaseSpec(name, name, service="foreign")])
    redis_admin = RedisConfig.from_stack(settings)
    key = f"foreign-service:{tag}"
    with redis_admin.client(0) as client:
        client.set(key, "secret", ex=600)
    s3 = S3Config.from_stack(settings)
    storage = s3.client()
    obj = f"foreign/{tag}/object"
    if not storage.bucket_exists("infra-tests"):
        storage.make_bucket("infra-tests")
    storage.put_object("infra-tests", obj, io.BytesIO(b"secret"), 6)
    try:
        yield {
            "EXAMPLE_FOREIGN_DB": name,
            "EXAMPLE_FOREIGN_KEY": key,
            "EXAMPLE_FOREIGN_OBJECT": obj,
            "EXAMPLE_FOREIGN_BUCKET": load_manifest(ROOT / "infra.toml").project.bucket_name,
        }
    finally:
        postgres.drop_database(name, force=True)
        postgres.drop_role(name)
        with redis_admin.client(0) as client:
            client.delete(key)
        storage.remove_object("infra-tests", obj)


def test_example_service_suite_runs_isolated_under_xdist(
    settings: StackSettings, tmp_path: Path, foreign: dict[str, str]
) -> None:
    env = {
        **os.environ,
        **foreign,
        "EXAMPLE_RECORD_DIR": str(tmp_path),
        "INFRA_ENV_FILE": str(ROOT / ".env"),
    }
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


# -- sessions killed with SIGKILL ---------------------------------------------------


def _start_session(name: str, record_dir: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "EXAMPLE_RECORD_DIR": str(record_dir),
        "EXAMPLE_SESSION": name,
        "INFRA_ENV_FILE": str(ROOT / ".env"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-p", "no:xdist",
         str(EXAMPLES / "check_lease.py")],
        cwd=record_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def _holding(name: str, record_dir: Path, process: subprocess.Popen[str]) -> dict[str, Any]:
    """Wait until session ``name`` holds its resources; what it recorded."""
    path = record_dir / f"{name}.json"
    deadline = time.monotonic() + 180
    while not path.exists():
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"session {name} ended early ({process.returncode}):\n{output}")
        assert time.monotonic() < deadline, f"session {name} did not start"
        time.sleep(0.2)
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def _kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    if process.stdout:
        process.stdout.close()


def _finish(name: str, record_dir: Path, process: subprocess.Popen[str]) -> None:
    (record_dir / f"{name}.release").touch()
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output


def _what_exists(settings: StackSettings, record: dict[str, Any]) -> set[str]:
    """Which of a session's resources are still on the stack."""
    present: set[str] = set()
    tag = record["owner"].removeprefix("pytest-")
    with psycopg.connect(**PostgresConfig.from_stack(settings).connect_kwargs()) as conn:
        if conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [record["database"]]
        ).fetchone():
            present.add("database")
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [record["role"]]).fetchone():
            present.add("role")
    redis_admin = RedisConfig.from_stack(settings)
    with RedisDbAllocator(redis_admin) as allocator:
        if record["owner"] in allocator.list():
            present.add("redis db")
        registry_db = allocator.registry_db
    with redis_admin.client(record["redis_db"]) as client:
        if client.exists(record["redis_key"]):
            present.add("redis key")
        if client.acl_getuser(record["owner"]) is not None:
            present.add("redis user")
    with redis_admin.client(registry_db) as client:
        if client.hexists(LEASE_KEY, tag):
            present.add("lease")
    s3 = S3Config.from_stack(settings)
    if f"svc-{record['owner']}" in json.loads(s3.admin_client().user_list() or "{}"):
        present.add("storage user")
    if list(s3.client().list_objects("infra-tests", prefix=record["object"])):
        present.add("object")
    return present


EVERYTHING = {
    "database", "role", "redis db", "redis key", "redis user", "lease", "storage user", "object",
}  # fmt: skip


def test_next_session_reclaims_a_killed_one_and_leaves_a_live_one(
    settings: StackSettings, tmp_path: Path
) -> None:
    killed = _start_session("killed", tmp_path)
    dead = _holding("killed", tmp_path, killed)
    _kill(killed)
    assert _what_exists(settings, dead) == EVERYTHING

    live = _start_session("live", tmp_path)
    try:
        alive = _holding("live", tmp_path, live)
        # The next session, run to its end, reclaims the dead one when it starts.
        (tmp_path / "next.release").touch()
        following = _start_session("next", tmp_path)
        _finish("next", tmp_path, following)
        assert _what_exists(settings, dead) == set()
        assert _what_exists(settings, alive) == EVERYTHING
    finally:
        _finish("live", tmp_path, live)
    assert _what_exists(settings, alive) == set()


def test_inv_test_cleanup_reclaims_a_killed_session_only(
    settings: StackSettings, tmp_path: Path
) -> None:
    # The live one first: a session starting after the kill would reclaim it itself.
    live = _start_session("live", tmp_path)
    try:
        alive = _holding("live", tmp_path, live)
        killed = _start_session("killed", tmp_path)
        dead = _holding("killed", tmp_path, killed)
        _kill(killed)
        # Leftovers of a session from before leases: no lease covers them.
        legacy = SessionNames(f"gw9x{uuid4().hex[:6]}")
        create_database(PostgresConfig.from_stack(settings), legacy)
        create_redis(RedisConfig.from_stack(settings), legacy)
        create_bucket_prefix(S3Config.from_stack(settings), legacy)
        dry = run_inv("test-cleanup", "--dry-run")
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert _what_exists(settings, dead) == EVERYTHING

        result = run_inv("test-cleanup")
        assert result.returncode == 0, result.stdout + result.stderr
        dead_tag = dead["owner"].removeprefix("pytest-")
        live_tag = alive["owner"].removeprefix("pytest-")
        assert f"{dead_tag} " in result.stdout
        assert f"{killed.pid}@" in result.stdout
        assert f"{live_tag} " in result.stdout
        assert f"{legacy.tag} " in result.stdout
        assert _what_exists(settings, dead) == set()
        with RedisDbAllocator(RedisConfig.from_stack(settings)) as allocator:
            assert legacy.owner not in allocator.list()
        with psycopg.connect(**PostgresConfig.from_stack(settings).connect_kwargs()) as conn:
            left = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [legacy.database]
            ).fetchall()
        assert left == []
        assert _what_exists(settings, alive) == EVERYTHING
    finally:
        _finish("live", tmp_path, live)
    assert _what_exists(settings, alive) == set()
