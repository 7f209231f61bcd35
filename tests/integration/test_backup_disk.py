"""`inv backup` into a full or read-only directory: a clear error, and the other targets.

Real file systems: a tiny tmpfs gives a real ENOSPC and a read-only tmpfs a
real EROFS (as root, a chmod alone would not stop the writes). Each mount
is unmounted afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql

from infra_lib.postgres.config import PostgresConfig
from infra_lib.redis.config import RedisConfig
from infra_lib.stack.compose import Stack

from .conftest import run_inv

pytestmark = pytest.mark.integration

DB = 11


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    mounted: list[Path] = []
    mount_bin, umount_bin = shutil.which("mount"), shutil.which("umount")
    assert mount_bin is not None and umount_bin is not None, "mount(8) is needed"

    def mount(options: str) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        subprocess.run([mount_bin, "-t", "tmpfs", "-o", options, "tmpfs", str(point)], check=True)
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run([umount_bin, str(point)], check=True)


@pytest.fixture
def rdb(stack: Stack) -> Iterator[redis.Redis]:
    client = RedisConfig.from_stack(stack.settings).client(DB)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def big_database(stack: Stack) -> Iterator[str]:
    """A database whose dump is far larger than the tiny tmpfs."""
    config = PostgresConfig.from_stack(stack.settings)
    name = f"bk{uuid.uuid4().hex[:6]}_big"
    with psycopg.connect(**config.connect_kwargs(autocommit=True)) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(**config.connect_kwargs(autocommit=True, dbname=name)) as conn:
        conn.execute("CREATE TABLE noise (id int, a text)")
        conn.execute(
            "INSERT INTO noise SELECT g, md5(random()::text) || md5(random()::text) "
            "FROM generate_series(1, 40000) g"
        )
    yield name
    with psycopg.connect(**config.connect_kwargs(autocommit=True)) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert "Errno" not in result.stderr, result.stderr


def test_backup_into_a_full_directory_is_a_clear_error(
    tmpfs: Callable[[str], Path], rdb: redis.Redis
) -> None:
    pipe = rdb.pipeline(transaction=False)
    for n in range(2000):
        pipe.set(f"noise:{n}", os.urandom(200))
    pipe.execute()
    full = tmpfs("size=64k")

    result = run_inv("backup", "--target", "redis", "--to", str(full), "--quiet")

    assert result.returncode == 1, result.stdout + result.stderr
    _no_traceback(result)
    assert f"cannot write the redis backup into {full}: No space left on device" in result.stderr
    assert "was removed" in result.stderr
    assert list(full.iterdir()) == [], "the unfinished archive is gone"


def test_backup_into_a_read_only_directory_is_a_clear_error(
    tmpfs: Callable[[str], Path],
) -> None:
    read_only = tmpfs("size=1m,ro")

    result = run_inv("backup", "--target", "redis", "--to", str(read_only), "--quiet")

    assert result.returncode == 1, result.stdout + result.stderr
    _no_traceback(result)
    assert f"cannot write the redis backup into {read_only}: Read-only file system" in (
        result.stderr
    )
    assert "Nothing was written" in result.stderr


def test_backup_of_all_targets_goes_on_after_one_fails(
    tmpfs: Callable[[str], Path], big_database: str
) -> None:
    full = tmpfs("size=256k")

    result = run_inv("backup", "--to", str(full), "--quiet")

    assert result.returncode == 1, result.stdout + result.stderr
    _no_traceback(result)
    assert "backup of 1 target(s) failed (postgres: cannot write the postgres backup" in (
        result.stderr
    )
    assert "Backed up: redis, minio." in result.stderr
    written = sorted(p.name.split("-", 1)[1] for p in full.iterdir())
    assert written == ["minio", "redis"], "the others were backed up; no leftover of postgres"
    assert sorted(Path(line).name for line in result.stdout.split()) == sorted(
        p.name for p in full.iterdir()
    )
