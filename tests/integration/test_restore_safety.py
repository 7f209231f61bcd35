"""Restores that fail or are killed part-way leave the servers in a known state.

- A restore of several targets checks every archive before it changes any.
- ``inv restore --force`` killed with SIGKILL mid-way leaves each target with
  exactly its old data (or, for MinIO once copying began, a complete staged
  copy that the next run finishes), and the next run cleans up.

Redis uses DB 11 (a scratch DB of the backup tests); everything else gets a
unique ``bk<tag>`` name and is removed afterwards.
"""

from __future__ import annotations

import concurrent.futures
import io
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from minio import Minio
from psycopg import sql

from infra_lib.backup import jobs
from infra_lib.backup.archive import read_archive
from infra_lib.backup.minio import BucketScope, backup_minio
from infra_lib.backup.minio_staging import STAGING_PREFIX, StagingPlan
from infra_lib.backup.postgres import PostgresSource, backup_postgres, restore_postgres
from infra_lib.backup.redis import backup_redis
from infra_lib.backup.remote import RemoteStore, S3Location, upload_archive
from infra_lib.errors import BackupCorrupt, BackupError
from infra_lib.postgres.config import PostgresConfig
from infra_lib.redis.allocator import RedisDbAllocator
from infra_lib.redis.config import RedisConfig
from infra_lib.stack.compose import Stack, StackPaths
from infra_lib.stack.settings import load_stack_settings
from infra_lib.storage.config import S3Config

from .conftest import ROOT, isolated_environ, run_inv
from .test_backup import Buckets, Pg, flip_byte

pytestmark = pytest.mark.integration

DB = 11


@pytest.fixture
def pg(stack: Stack) -> Iterator[Pg]:
    scratch = Pg(PostgresConfig.from_stack(stack.settings))
    yield scratch
    scratch.cleanup()


@pytest.fixture(scope="module")
def redis_config(stack: Stack) -> RedisConfig:
    return RedisConfig.from_stack(stack.settings)


@pytest.fixture
def rdb(redis_config: RedisConfig) -> Iterator[redis.Redis]:
    client = redis_config.client(DB)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def store(stack: Stack) -> S3Config:
    return S3Config.from_stack(stack.settings)


@pytest.fixture
def buckets(store: S3Config) -> Iterator[Buckets]:
    made = Buckets(store.client())
    yield made
    made.cleanup()


def _start_inv(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_when(proc: subprocess.Popen[str], ready: Callable[[], bool], what: str) -> None:
    """SIGKILL ``proc`` as soon as ``ready()``; fail if it finished first."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the restore finished (exit {proc.returncode}) before {what}:\n{err}")
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            return
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"never saw {what}")


def _redis_keys(client: redis.Redis) -> dict[bytes, bytes | None]:
    return {key: client.get(key) for key in client.scan_iter(count=1000)}


def _total_keys(config: RedisConfig) -> int:
    with config.client(0) as client:
        keyspace = client.info("keyspace")
    return sum(int(v["keys"]) for v in keyspace.values())


def _object_set(client: Minio, bucket: str) -> dict[str, bytes]:
    out = {}
    for obj in client.list_objects(bucket, recursive=True):
        key = obj.object_name or ""
        response = client.get_object(bucket, key)
        try:
            out[key] = response.read()
        finally:
            response.close()
            response.release_conn()
    return out


def _put(client: Minio, bucket: str, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        client.put_object(bucket, key, io.BytesIO(data), len(data))


def _staging_buckets(client: Minio) -> list[str]:
    return [b.name for b in client.list_buckets() if b.name.startswith(STAGING_PREFIX)]


def _clear(client: Minio, bucket: str) -> None:
    from minio.deleteobjects import DeleteObject

    doomed = [
        DeleteObject(o.object_name or "") for o in client.list_objects(bucket, recursive=True)
    ]
    assert not list(client.remove_objects(bucket, doomed))


# -- item 1: every archive is checked before any target changes ---------------


@dataclass(frozen=True)
class _ThreeArchives:
    database: str
    bucket: str
    minio_archive: Path


def _back_up_three(
    stack: Stack,
    pg: Pg,
    rdb: redis.Redis,
    redis_config: RedisConfig,
    buckets: Buckets,
    store: S3Config,
    dest: Path,
    label: str,
) -> _ThreeArchives:
    """A table of 50 rows, a Redis key and an object, each backed up into ``dest``."""
    database = pg.database(label)
    with pg.connect(database) as conn:
        conn.execute("CREATE TABLE item (id int PRIMARY KEY)")
        conn.execute("INSERT INTO item SELECT generate_series(1, 50)")
    rdb.set("state", "backed up")
    bucket = buckets.name(label)
    store.client().make_bucket(bucket)
    _put(store.client(), bucket, {"a.txt": b"backed up"})
    backup_postgres(PostgresSource.from_stack(stack), dest, databases=[database])
    backup_redis(redis_config, dest, dbs=[DB])
    minio_archive = backup_minio(store, dest, scopes=[BucketScope(bucket)]).path
    return _ThreeArchives(database, bucket, minio_archive)


def test_restore_of_all_targets_checks_every_archive_first(
    stack: Stack,
    pg: Pg,
    rdb: redis.Redis,
    redis_config: RedisConfig,
    buckets: Buckets,
    store: S3Config,
    tmp_path: Path,
) -> None:
    dest = tmp_path / "archives"
    made = _back_up_three(stack, pg, rdb, redis_config, buckets, store, dest, "multi")
    client = store.client()
    with pg.connect(made.database) as conn:
        conn.execute("DELETE FROM item WHERE id > 10")
    rdb.set("state", "changed since")
    _put(client, made.bucket, {"a.txt": b"changed since", "b.txt": b"new"})
    flip_byte(made.minio_archive / "objects.tar.gz")

    result = run_inv("restore", "--dir", str(dest), "--force", "--quiet")

    assert result.returncode != 0
    assert "objects.tar.gz has sha256" in result.stderr, result.stderr
    with pg.connect(made.database) as conn:
        assert conn.execute("SELECT count(*) FROM item").fetchone() == (10,)
    assert rdb.get("state") == b"changed since"
    assert _object_set(client, made.bucket) == {"a.txt": b"changed since", "b.txt": b"new"}


def test_restore_of_all_targets_without_force_refuses_before_any_change(
    stack: Stack,
    pg: Pg,
    rdb: redis.Redis,
    redis_config: RedisConfig,
    buckets: Buckets,
    store: S3Config,
    tmp_path: Path,
) -> None:
    # PostgreSQL alone would restore (its database is gone), but Redis holds
    # keys: the refusal must come before PostgreSQL is touched.
    dest = tmp_path / "archives"
    made = _back_up_three(stack, pg, rdb, redis_config, buckets, store, dest, "refuse")
    with pg.connect() as conn:
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(made.database)))
    rdb.set("state", "changed since")

    result = run_inv("restore", "--dir", str(dest), "--quiet")

    assert result.returncode == 3, result.stderr
    assert "not restoring over existing data" in result.stderr
    assert f"DB {DB} holds" in result.stderr
    assert not pg.exists(made.database)
    assert rdb.get("state") == b"changed since"


def test_restore_from_s3_downloads_and_checks_every_archive_first(
    stack: Stack,
    rdb: redis.Redis,
    redis_config: RedisConfig,
    buckets: Buckets,
    store: S3Config,
    tmp_path: Path,
) -> None:
    client = store.client()
    bucket = buckets.name("remote")
    client.make_bucket(bucket)
    _put(client, bucket, {"a.txt": b"backed up"})
    rdb.set("state", "backed up")
    backups = buckets.name("backups")
    remote = RemoteStore(store, S3Location(backups, "team"))
    upload_archive(remote, backup_redis(redis_config, tmp_path / "local", dbs=[DB]))
    minio_archive = backup_minio(store, tmp_path / "local", scopes=[BucketScope(bucket)])
    upload_archive(remote, minio_archive)
    damaged = bytearray((minio_archive.path / "objects.tar.gz").read_bytes())
    damaged[len(damaged) // 2] ^= 0x20
    client.put_object(
        backups,
        remote.location.key(minio_archive.name, "objects.tar.gz"),
        io.BytesIO(bytes(damaged)),
        len(damaged),
    )
    rdb.set("state", "changed since")

    with pytest.raises(BackupCorrupt, match="sha256"):
        jobs.restore_remote(
            stack, ["redis", "minio"], remote=remote, work_dir=tmp_path / "work", force=True
        )

    assert rdb.get("state") == b"changed since", "redis was not restored before the check"
    assert not [p for p in (tmp_path / "work").iterdir() if p.name.startswith(".restore-")]


# -- item 2: a killed restore leaves old or complete new data ----------------


def test_killed_redis_restore_leaves_the_old_keys_and_the_next_run_cleans_up(
    rdb: redis.Redis, redis_config: RedisConfig, tmp_path: Path
) -> None:
    pipe = rdb.pipeline(transaction=False)
    for n in range(100_000):
        pipe.set(f"new:{n}", n)
    pipe.execute()
    archive = backup_redis(redis_config, tmp_path, dbs=[DB]).path
    rdb.flushdb()
    old = {f"old:{n}".encode(): f"v{n}".encode() for n in range(10)}
    rdb.mset(old)  # type: ignore[arg-type]
    baseline = _total_keys(redis_config)

    proc = _start_inv("restore", "--target", "redis", "--from", str(archive), "--force", "--quiet")
    # Whichever DB the keys go to, 20,000 of 100,000 restored is mid-way.
    _kill_when(proc, lambda: _total_keys(redis_config) > baseline + 20_000, "20,000 keys restored")

    assert _redis_keys(rdb) == old, "the target DB holds exactly its old keys"
    from infra_lib.backup.redis import SCRATCH_MARKER

    with RedisDbAllocator(redis_config) as allocator:
        marked = []
        for db in range(allocator.databases):
            with redis_config.client(db) as client:
                if client.exists(SCRATCH_MARKER):
                    marked.append(db)
    assert len(marked) == 1, "the partial copy sits in one marked scratch DB"
    made = run_inv("backup", "--target", "redis", "--to", str(tmp_path / "b"), "--quiet")
    assert made.returncode == 0, made.stderr
    datasets = read_archive(Path(made.stdout.split()[-1])).manifest.datasets
    assert f"db{marked[0]}" not in [d.name for d in datasets], "a scratch DB is not backed up"

    again = run_inv("restore", "--target", "redis", "--from", str(archive), "--force", "--quiet")
    assert again.returncode == 0, again.stderr
    assert rdb.dbsize() == 100_000
    assert rdb.get("new:99999") == b"99999"
    assert _total_keys(redis_config) == baseline - len(old) + 100_000, "no scratch DB is left"
    with RedisDbAllocator(redis_config) as allocator:
        assert not [n for n in allocator.list() if n.startswith("infra-restore-scratch-")]
        for db in range(allocator.databases):
            with redis_config.client(db) as client:
                assert not client.exists(SCRATCH_MARKER), f"DB {db} still marked"


def _fill_minio(client: Minio, bucket: str, count: int) -> dict[str, bytes]:
    new = {f"obj/{n:05d}": f"new {n}".encode() for n in range(count)}
    _put(client, bucket, new)
    return new


def test_killed_minio_restore_while_staging_leaves_the_old_objects(
    buckets: Buckets, store: S3Config, tmp_path: Path
) -> None:
    client = store.client()
    bucket = buckets.name("killed")
    client.make_bucket(bucket)
    new = _fill_minio(client, bucket, 1500)
    archive = backup_minio(store, tmp_path, scopes=[BucketScope(bucket)]).path
    _clear(client, bucket)
    old = {f"old/{n}": f"old {n}".encode() for n in range(5)}
    _put(client, bucket, old)

    def mid_way() -> bool:
        seen = sum(
            1 for o in client.list_objects(bucket, recursive=True) if o.object_name not in old
        )
        for name in _staging_buckets(client):
            seen += sum(1 for _ in client.list_objects(name, recursive=True))
        return seen > 200

    proc = _start_inv("restore", "--target", "minio", "--from", str(archive), "--force", "--quiet")
    _kill_when(proc, mid_way, "200 objects uploaded")

    assert _object_set(client, bucket) == old, "the bucket holds exactly its old objects"

    again = run_inv("restore", "--target", "minio", "--from", str(archive), "--force")
    assert again.returncode == 0, again.stderr
    assert "left by an interrupted restore" in again.stdout
    assert _object_set(client, bucket) == new
    assert _staging_buckets(client) == []


def test_killed_minio_restore_while_copying_is_finished_by_the_next_run(
    buckets: Buckets, store: S3Config, tmp_path: Path
) -> None:
    client = store.client()
    bucket = buckets.name("copying")
    client.make_bucket(bucket)
    new = _fill_minio(client, bucket, 1500)
    archive = backup_minio(store, tmp_path, scopes=[BucketScope(bucket)]).path
    _clear(client, bucket)
    old = {f"old/{n}": f"old {n}".encode() for n in range(5)}
    _put(client, bucket, old)

    def copying() -> bool:
        for name in _staging_buckets(client):
            plan = StagingPlan.read(client, name)
            if plan is not None and plan.phase == "copying":
                return True
        return False

    proc = _start_inv("restore", "--target", "minio", "--from", str(archive), "--force", "--quiet")
    _kill_when(proc, copying, "the copy into place begin")
    [staging] = _staging_buckets(client)
    staged = _object_set(client, staging)
    assert {k: v for k, v in staged.items() if k in new} == new, "the staged copy is complete"

    # Any later MinIO restore finishes it first; here one into another bucket.
    other = buckets.name("other")
    again = run_inv("restore", "--target", "minio", "--from", str(archive), "--into", other)
    assert again.returncode == 0, again.stderr
    assert "finished an interrupted restore" in again.stdout
    assert _object_set(client, bucket) == new, "the old objects are gone, every new one is in"
    assert _staging_buckets(client) == []


def test_killed_postgres_restore_leaves_no_temp_database_in_backups(
    stack: Stack, pg: Pg, tmp_path: Path
) -> None:
    database = pg.database("big")
    with pg.connect(database) as conn:
        conn.execute("CREATE TABLE big (id bigint, a text)")
        conn.execute(
            "INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 400000) g"
        )
    source = PostgresSource.from_stack(stack)
    archive = backup_postgres(source, tmp_path / "a", databases=[database], compress="none").path
    with pg.connect(database) as conn:
        conn.execute("DELETE FROM big WHERE id > 10")

    def temp_databases() -> list[str]:
        with pg.connect() as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'infra\\_restore\\_%'"
            ).fetchall()
        return [r[0] for r in rows]

    def restoring() -> bool:
        temp = temp_databases()
        if not temp:
            return False
        with pg.connect() as conn:
            row = conn.execute("SELECT pg_database_size(%s)", [temp[0]]).fetchone()
        return row is not None and row[0] > 30_000_000

    proc = _start_inv("restore", "--target", "postgres", "--from", str(archive), "--force")
    _kill_when(proc, restoring, "the temporary database fill up")
    [leftover] = temp_databases()
    pg.track(leftover)
    with pg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM big").fetchone() == (10,), "target untouched"
    # pg_restore in the container reads its input to the end before it
    # notices; on a loaded machine that took over a minute. Until it has gone,
    # the next restore rightly leaves the database alone as possibly in use.
    deadline = time.monotonic() + 240
    busy: tuple[Any, ...] | None = None
    while time.monotonic() < deadline:
        with pg.connect() as conn:
            busy = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [leftover]
            ).fetchone()
        if busy == (0,):
            break
        time.sleep(0.5)
    assert busy == (0,), f"the killed restore's session on {leftover} is still there after 240 s"

    made = run_inv("backup", "--target", "postgres", "--to", str(tmp_path / "b"), "--quiet")
    assert made.returncode == 0, made.stderr
    included = [d.name for d in read_archive(Path(made.stdout.split()[-1])).manifest.datasets]
    assert database in included
    assert leftover not in included, "a killed restore's temporary copy is not backed up"

    again = run_inv("restore", "--target", "postgres", "--from", str(archive), "--force")
    assert again.returncode == 0, again.stderr
    assert f"dropped {leftover}" in again.stdout
    assert temp_databases() == []
    with pg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM big").fetchone() == (400_000,)
    with pg.connect() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(leftover)))


def test_postgres_restore_cut_off_reports_pg_restore_not_the_cleanup(
    throwaway_env: Path, tmp_path: Path
) -> None:
    started = run_inv("up", "--service", "postgres", "--no-provision", env_file=throwaway_env)
    assert started.returncode == 0, started.stdout + started.stderr
    other = Stack(
        load_stack_settings(throwaway_env, environ=isolated_environ()),
        StackPaths.for_root(ROOT, throwaway_env),
    )
    source = PostgresSource.from_stack(other)
    admin = source.config.connect_kwargs(autocommit=True)
    with psycopg.connect(**admin) as conn:
        conn.execute("CREATE DATABASE bkcut")
    with psycopg.connect(**{**admin, "dbname": "bkcut"}) as conn:
        conn.execute("CREATE TABLE big (id bigint, a text)")
        conn.execute(
            "INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 400000) g"
        )
    archive = backup_postgres(source, tmp_path, databases=["bkcut"], compress="none").path

    def filling() -> bool:
        with psycopg.connect(**admin) as conn:
            row = conn.execute(
                "SELECT max(pg_database_size(datname)) FROM pg_database "
                "WHERE datname LIKE 'infra\\_restore\\_%'"
            ).fetchone()
        return row is not None and row[0] is not None and row[0] > 20_000_000

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(restore_postgres, source, archive, into="bkcut_copy")
        deadline = time.monotonic() + 120
        while not filling():
            assert not running.done(), f"the restore ended first: {running.exception()!r}"
            assert time.monotonic() < deadline, "the restore never filled its temporary copy"
            time.sleep(0.05)
        other.stop(["postgres"])
        failure = running.exception(timeout=120)

    assert isinstance(failure, BackupError), repr(failure)
    message = str(failure)
    assert message.startswith("pg_restore of database bkcut failed"), message
    assert "could not be dropped" in message
    assert "the next `inv restore` drops it" in message
