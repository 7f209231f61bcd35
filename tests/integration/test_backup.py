"""Backup and restore against the real servers: round trips, refusals and faults.

Every database, role, bucket and key is created here under a unique
``bk<tag>`` name and removed afterwards; Redis uses only DBs 10-13, emptied
before and after. The fault test stops the postgres container of a
throwaway project, never the main stack's.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from minio import Minio
from minio.commonconfig import ENABLED, Tags
from minio.deleteobjects import DeleteObject
from minio.versioningconfig import VersioningConfig
from psycopg import sql

from infra_lib.backup import jobs
from infra_lib.backup.archive import latest, list_archives, read_archive
from infra_lib.backup.minio import BucketScope, backup_minio, restore_minio
from infra_lib.backup.postgres import (
    PostgresSource,
    backup_postgres,
    restore_postgres,
)
from infra_lib.backup.redis import backup_redis, restore_redis
from infra_lib.errors import BackupCorrupt, BackupError, RestoreRefused
from infra_lib.manifest import parse_manifest
from infra_lib.postgres.config import PostgresConfig
from infra_lib.redis.config import RedisConfig
from infra_lib.stack.compose import Stack, StackPaths
from infra_lib.stack.settings import load_stack_settings
from infra_lib.storage.config import S3Config

from .conftest import ROOT, isolated_environ, run_inv

pytestmark = pytest.mark.integration

#: DBs this file may use; the services hold 0-4 and the registry the last one.
SCRATCH_DBS = (10, 11, 12, 13)


def flip_byte(path: Path, offset: int = 200) -> None:
    data = bytearray(path.read_bytes())
    data[min(offset, len(data) - 1)] ^= 0x20
    path.write_bytes(bytes(data))


# -- PostgreSQL -------------------------------------------------------------


class Pg:
    """Unique databases and roles for one test, dropped afterwards."""

    def __init__(self, config: PostgresConfig) -> None:
        self.config = config
        self.tag = uuid.uuid4().hex[:6]
        self.databases: list[str] = []
        self.roles: list[str] = []

    def name(self, label: str) -> str:
        return f"bk{self.tag}_{label}"

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(
            **self.config.connect_kwargs(autocommit=True, dbname=dbname, **kwargs)
        )

    def role(self, label: str, password: str) -> str:
        name = self.name(label)
        self.roles.append(name)
        with self.connect() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(password)
                )
            )
        return name

    def database(self, label: str, owner: str | None = None) -> str:
        name = self.name(label)
        self.track(name)
        with self.connect() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(owner or self.config.user)
                )
            )
        return name

    def track(self, name: str) -> str:
        self.databases.append(name)
        return name

    def exists(self, name: str) -> bool:
        with self.connect() as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        return row is not None

    def cleanup(self) -> None:
        with self.connect() as conn:
            for name in self.databases:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
            for role in self.roles:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def pg_source(stack: Stack) -> PostgresSource:
    return PostgresSource.from_stack(stack)


@pytest.fixture
def pg(stack: Stack) -> Iterator[Pg]:
    scratch = Pg(PostgresConfig.from_stack(stack.settings))
    yield scratch
    scratch.cleanup()


def _leftover_temp_databases(pg: Pg) -> list[str]:
    with pg.connect() as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'infra\\_restore\\_%' "
            "OR datname LIKE 'infra\\_drill\\_%'"
        ).fetchall()
    return [r[0] for r in rows]


def _small_db(pg: Pg, label: str = "small", rows: int = 50) -> str:
    name = pg.database(label)
    with pg.connect(name) as conn:
        conn.execute("CREATE TABLE item (id int PRIMARY KEY, label text)")
        conn.execute(
            "INSERT INTO item SELECT g, 'item ' || g FROM generate_series(1, %s) g", [rows]
        )
    return name


def _count(pg: Pg, db: str, table: str = "item") -> int:
    with pg.connect(db) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        ).fetchone()
    assert row is not None
    return int(row[0])


def _snapshot(pg: Pg, db: str) -> dict[str, Any]:
    """Everything the round trip must reproduce, as plain values."""
    with pg.connect(db) as conn:
        return {
            "authors": conn.execute("SELECT * FROM author ORDER BY id").fetchall(),
            "books": conn.execute(
                "SELECT id, author_id, title, price, tags, meta FROM book ORDER BY id"
            ).fetchall(),
            "view": conn.execute("SELECT * FROM cheap_books ORDER BY title").fetchall(),
            "sequences": conn.execute(
                "SELECT sequencename, last_value FROM pg_sequences ORDER BY 1"
            ).fetchall(),
            "blob": conn.execute("SELECT name, lo_get(blob) FROM doc ORDER BY name").fetchall(),
            "index": conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'book_title_idx'"
            ).fetchall(),
            "owners": conn.execute(
                "SELECT relname, pg_get_userbyid(relowner) FROM pg_class "
                "WHERE relname IN ('author', 'book', 'cheap_books', 'invoice_no') ORDER BY 1"
            ).fetchall(),
        }


def test_postgres_round_trip_into_a_new_database(
    pg: Pg, pg_source: PostgresSource, tmp_path: Path
) -> None:
    owner_pw, reader_pw = f"owner-{pg.tag}", f"reader-{pg.tag}"
    owner = pg.role("owner", owner_pw)
    reader = pg.role("reader", reader_pw)
    src = pg.database("src", owner)
    blob = bytes(range(256)) * 40
    with pg.connect(src) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        conn.execute("CREATE TABLE author (id serial PRIMARY KEY, name text NOT NULL)")
        conn.execute(
            "CREATE TABLE book (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "author_id int REFERENCES author, title text, price numeric(8,2), tags text[], "
            "meta jsonb)"
        )
        conn.execute("CREATE INDEX book_title_idx ON book (lower(title))")
        conn.execute("CREATE SEQUENCE invoice_no START 1000")
        conn.execute("SELECT nextval('invoice_no') FROM generate_series(1, 3)")
        conn.execute("CREATE VIEW cheap_books AS SELECT title, price FROM book WHERE price < 10")
        conn.execute("CREATE TABLE doc (name text PRIMARY KEY, blob oid)")
        conn.execute("INSERT INTO author (name) VALUES ('Ada'), ('Grace'), ('Émile ☃')")
        conn.execute(
            "INSERT INTO book (author_id, title, price, tags, meta) "
            "SELECT 1 + g % 3, 'title ' || g, (g % 20) + 0.99, ARRAY['t' || g, 'x'], "
            "jsonb_build_object('n', g) FROM generate_series(1, 500) g"
        )
        conn.execute("INSERT INTO doc VALUES ('manual', lo_from_bytea(0, %s))", [blob])
        conn.execute(sql.SQL("GRANT SELECT ON book TO {}").format(sql.Identifier(reader)))
        conn.execute("RESET ROLE")
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(src)))
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(src), sql.Identifier(reader)
            )
        )
    before = _snapshot(pg, src)

    archive = backup_postgres(pg_source, tmp_path / "b", databases=[src]).path
    manifest = read_archive(archive).manifest
    dataset = manifest.dataset(src)
    assert dataset is not None
    assert dataset.counts == {"public.author": 3, "public.book": 500, "public.doc": 1}
    assert dataset.details["large_objects"] == 1
    assert dataset.details["sequences"]["public.invoice_no"] == 1002
    assert {owner, reader} <= set(dataset.details["roles"])

    # The reader role disappears; the restore must bring it back, password included.
    with pg.connect(src) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(reader)))
    with pg.connect() as conn:
        conn.execute(
            sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(
                sql.Identifier(src), sql.Identifier(reader)
            )
        )
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(reader)))

    copy = pg.track(pg.name("copy"))
    report = restore_postgres(pg_source, archive, into=copy)

    [restored] = report.datasets
    assert restored.into == copy
    assert not restored.replaced
    assert restored.ok
    assert f"created role {reader}" in restored.notes
    assert ("table public.book", 500, 500) in [
        (c.item, c.expected, c.actual) for c in restored.checks
    ]
    assert _snapshot(pg, copy) == before
    assert _snapshot(pg, src)["books"] == before["books"], "the original is untouched"
    reader_config = pg.config.with_login(reader, reader_pw, copy)
    with psycopg.connect(**reader_config.connect_kwargs()) as conn:
        assert conn.execute("SELECT count(*) FROM book").fetchone() == (500,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM author")
    with pg.connect() as conn:
        comment = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            [copy],
        ).fetchone()
    assert comment == (None,)
    assert _leftover_temp_databases(pg) == []


def test_postgres_restore_over_data_needs_force(
    pg: Pg, pg_source: PostgresSource, tmp_path: Path
) -> None:
    src = _small_db(pg)
    archive = backup_postgres(pg_source, tmp_path, databases=[src]).path
    with pg.connect(src) as conn:
        conn.execute("INSERT INTO item VALUES (1000, 'written after the backup')")

    with pytest.raises(RestoreRefused, match=rf"{src} holds 1 table\(s\).*Nothing was changed"):
        restore_postgres(pg_source, archive)
    assert _count(pg, src) == 51, "a refused restore changes nothing"

    report = restore_postgres(pg_source, archive, force=True)
    [restored] = report.datasets
    assert restored.replaced
    assert any("dropped the existing database" in note for note in restored.notes)
    assert _count(pg, src) == 50
    assert _leftover_temp_databases(pg) == []


def test_postgres_damaged_archive_is_refused_before_any_change(
    pg: Pg, pg_source: PostgresSource, tmp_path: Path
) -> None:
    src = _small_db(pg)
    archive = backup_postgres(pg_source, tmp_path, databases=[src]).path
    with pg.connect(src) as conn:
        conn.execute("DELETE FROM item WHERE id > 10")
    [dump] = [p for p in archive.iterdir() if p.suffix == ".dump"]
    flip_byte(dump)

    with pytest.raises(BackupCorrupt, match=rf"{dump.name} has sha256 .* the manifest says"):
        restore_postgres(pg_source, archive, force=True)
    assert _count(pg, src) == 10, "the database is exactly as before"
    into = pg.track(pg.name("never"))
    with pytest.raises(BackupCorrupt):
        restore_postgres(pg_source, archive, into=into)
    assert not pg.exists(into)
    assert _leftover_temp_databases(pg) == []


def test_postgres_remote_mode_refuses_an_older_pg_dump(pg: Pg, tmp_path: Path) -> None:
    # The process boundary only: client tools that report an older major
    # version, so the test does not depend on which pg_dump this host has.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for program in ("pg_dump", "pg_dumpall", "pg_restore"):
        tool = bindir / program
        tool.write_text(f"#!/bin/sh\necho '{program} (PostgreSQL) 15.4'\n")
        tool.chmod(0o755)
    dest = tmp_path / "archives"
    dest.mkdir()
    src = _small_db(pg)
    with pytest.raises(BackupError, match=r"pg_dump is version 15 .* older than the server's 17"):
        backup_postgres(PostgresSource.remote(pg.config, bindir=bindir), dest, databases=[src])
    assert list(dest.iterdir()) == []


def test_service_backup_keeps_exactly_n_and_restores_beside(
    stack: Stack, pg: Pg, tmp_path: Path
) -> None:
    owner = pg.role("svcowner", f"pw-{pg.tag}")
    src = pg.database("svc", owner)
    with pg.connect(src) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        conn.execute("CREATE TABLE note (id int, body text)")
    service = f"bk-{pg.tag}"
    manifest = parse_manifest(
        {"services": {service: {"postgres": {"database": src, "role": owner}}}}, path="<test>"
    )
    dest = tmp_path / "backups"
    made = []
    for n in range(3):
        with pg.connect(src) as conn:
            conn.execute("INSERT INTO note VALUES (%s, 'n')", [n])
        [outcome] = jobs.backup(
            stack, ["postgres"], dest=dest, manifest=manifest, service=service, keep=2
        )
        made.append(outcome.archive.path)
        assert outcome.archive.scope == f"service:{service}"
        assert [d.name for d in outcome.archive.manifest.datasets] == [src]
    kept = list_archives(dest, "postgres")
    assert [a.path for a in kept] == made[1:], "exactly the 2 newest are kept"
    assert not made[0].exists()

    beside = pg.track(pg.name("beside"))
    [report] = jobs.restore(
        stack, ["postgres"], dest=dest, manifest=manifest, service=service, into=beside
    )
    assert report.archive == made[2]
    assert _count(pg, beside, "note") == 3
    assert _count(pg, src, "note") == 3


def test_postgres_drill_passes_on_a_good_archive_and_fails_on_a_damaged_one(
    stack: Stack, pg: Pg, pg_source: PostgresSource, tmp_path: Path
) -> None:
    src = _small_db(pg)
    archive = backup_postgres(pg_source, tmp_path, databases=[src]).path

    good = jobs.drill(stack, "postgres", dest=tmp_path)
    assert good.ok, good.message
    assert good.archive == archive
    info = read_archive(archive)
    assert info.verified is not None
    assert info.verified.ok

    flip_byte(next(p for p in archive.iterdir() if p.suffix == ".dump"), offset=5000)
    bad = jobs.drill(stack, "postgres", dest=tmp_path)
    assert not bad.ok
    assert "sha256" in bad.message
    verified = read_archive(archive).verified
    assert verified is not None
    assert not verified.ok
    assert _leftover_temp_databases(pg) == []


# -- Redis ------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_config(stack: Stack) -> RedisConfig:
    return RedisConfig.from_stack(stack.settings)


@pytest.fixture
def rdb(redis_config: RedisConfig) -> Iterator[dict[int, redis.Redis]]:
    clients = {db: redis_config.client(db) for db in SCRATCH_DBS}
    for client in clients.values():
        client.flushdb()
    yield clients
    for client in clients.values():
        client.flushdb()
        client.close()


def _fill_redis(client: redis.Redis) -> None:
    client.set(b"bk:str\x00bin", b"\x00\xff binary \xe2\x98\x83")
    client.set("bk:ttl", "soon", ex=120)
    client.hset("bk:hash", mapping={"a": "1", "b": "2"})
    client.pexpire("bk:hash", 90_000)
    client.rpush("bk:list", "x", "y", "z", "x")
    client.sadd("bk:set", "m1", "m2", "m3")
    client.zadd("bk:zset", {"low": -2.5, "high": 1e9})
    for n in range(3):
        client.xadd("bk:stream", {"n": str(n)})
    client.xgroup_create("bk:stream", "workers", id="0")
    client.xreadgroup("workers", "w1", {"bk:stream": ">"}, count=2)
    pipe = client.pipeline(transaction=False)
    for n in range(2500):
        pipe.set(f"bk:many:{n}", n)
    pipe.execute()


def _redis_view(client: redis.Redis) -> dict[bytes, Any]:
    view: dict[bytes, Any] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"string":
            value: Any = client.get(key)
        elif kind == b"hash":
            value = client.hgetall(key)
        elif kind == b"list":
            value = client.lrange(key, 0, -1)
        elif kind == b"set":
            value = client.smembers(key)
        elif kind == b"zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            groups = [
                (g["name"], g["pending"], g["last-delivered-id"]) for g in client.xinfo_groups(key)
            ]
            value = (client.xrange(key), groups)
        view[key] = (kind, value)
    return view


def _ttls(client: redis.Redis, keys: list[str]) -> dict[str, int]:
    return {key: int(client.pttl(key)) for key in keys}


def test_redis_round_trip_keeps_every_type_and_ttl(
    rdb: dict[int, redis.Redis], redis_config: RedisConfig, tmp_path: Path
) -> None:
    src, copy = rdb[10], rdb[11]
    _fill_redis(src)
    src.set("bk:short", "gone before the restore", px=300)
    archive = backup_redis(redis_config, tmp_path, dbs=[10]).path
    dataset = read_archive(archive).manifest.dataset("db10")
    assert dataset is not None
    assert dataset.counts["keys"] == 2508
    assert dataset.counts["stream"] == 1
    assert dataset.counts["zset"] == 1
    time.sleep(0.4)
    expected = _redis_view(src)
    ttl_before = _ttls(src, ["bk:ttl", "bk:hash"])
    started = time.monotonic()

    report = restore_redis(redis_config, archive, into=11)

    [restored] = report.datasets
    assert restored.ok
    assert restored.into == "db11"
    assert any("1 key(s) had expired" in note for note in restored.notes)
    assert _redis_view(copy) == expected
    ttl_after = _ttls(copy, ["bk:ttl", "bk:hash"])
    # The expiry is absolute: the TTL shrinks by the time the restore took, no more.
    elapsed_ms = int((time.monotonic() - started) * 1000)
    for key, before in ttl_before.items():
        assert before - elapsed_ms - 500 <= ttl_after[key] <= before + 50, (
            key,
            before,
            ttl_after[key],
        )
    assert copy.pttl("bk:list") == -1
    assert copy.exists("bk:short") == 0


def test_redis_restore_over_keys_needs_force_and_then_replaces(
    rdb: dict[int, redis.Redis], redis_config: RedisConfig, tmp_path: Path
) -> None:
    db = rdb[12]
    db.set("bk:keep", "original")
    db.hset("bk:h", "f", "v")
    archive = backup_redis(redis_config, tmp_path, dbs=[12]).path
    db.set("bk:keep", "changed")
    db.set("bk:new", "written after the backup")

    with pytest.raises(RestoreRefused, match=r"DB 12 holds 3 key\(s\)"):
        restore_redis(redis_config, archive)
    assert db.get("bk:keep") == b"changed"
    assert db.dbsize() == 3

    [restored] = restore_redis(redis_config, archive, force=True).datasets
    assert restored.replaced
    assert any("SWAPDB" in note for note in restored.notes)
    assert db.get("bk:keep") == b"original"
    assert db.exists("bk:new") == 0
    assert db.dbsize() == 2


def test_redis_drill_uses_an_empty_scratch_db_and_catches_damage(
    stack: Stack, rdb: dict[int, redis.Redis], redis_config: RedisConfig, tmp_path: Path
) -> None:
    _fill_redis(rdb[10])
    archive = backup_redis(redis_config, tmp_path, dbs=[10]).path
    good = jobs.drill(stack, "redis", dest=tmp_path, redis_scratch_db=13)
    assert good.ok, good.message
    assert rdb[13].dbsize() == 0, "the drill empties its scratch DB"

    flip_byte(archive / "db10.keys.gz", offset=1000)
    bad = jobs.drill(stack, "redis", dest=tmp_path, redis_scratch_db=13)
    assert not bad.ok
    assert "db10.keys.gz" in bad.message
    assert rdb[13].dbsize() == 0


# -- MinIO ------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(stack: Stack) -> S3Config:
    return S3Config.from_stack(stack.settings)


class Buckets:
    def __init__(self, client: Minio) -> None:
        self.client = client
        self.tag = uuid.uuid4().hex[:6]
        self.names: list[str] = []

    def name(self, label: str) -> str:
        name = f"bk{self.tag}-{label}"
        self.names.append(name)
        return name

    def cleanup(self) -> None:
        for bucket in self.names:
            if not self.client.bucket_exists(bucket):
                continue
            versions = [
                DeleteObject(o.object_name or "", o.version_id)
                for o in self.client.list_objects(bucket, recursive=True, include_version=True)
            ]
            for error in self.client.remove_objects(bucket, versions):
                raise AssertionError(f"cleanup of {bucket} failed: {error}")
            self.client.remove_bucket(bucket)


@pytest.fixture
def buckets(store: S3Config) -> Iterator[Buckets]:
    made = Buckets(store.client())
    yield made
    made.cleanup()


OBJECTS: dict[str, tuple[bytes, str, dict[str, str]]] = {
    "readme.txt": (b"hello\n", "text/plain", {"x-amz-meta-owner": "alice"}),
    "a/b/c/deep.json": (
        b'{"deep": true}',
        "application/json",
        {"Cache-Control": "max-age=60", "Content-Disposition": 'attachment; filename="d.json"'},
    ),
    "boards/1/attach.bin": (os.urandom(3 * 1024 * 1024 + 7), "application/octet-stream", {}),
    "boards/2/empty": (b"", "application/x-empty", {"x-amz-meta-note": "zero bytes"}),
    "ünï/cödé ✓.txt": ("ünïcödé".encode(), "text/plain; charset=utf-8", {}),
}


def _fill_bucket(client: Minio, bucket: str) -> None:
    client.make_bucket(bucket)
    for key, (data, content_type, metadata) in OBJECTS.items():
        client.put_object(
            bucket, key, io.BytesIO(data), len(data), content_type=content_type, metadata=metadata
        )
    client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": ["*"]},
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/boards/*"],
            }
        ],
    }
    client.set_bucket_policy(bucket, json.dumps(policy))
    tags = Tags.new_bucket_tags()
    tags["team"] = "core"
    client.set_bucket_tags(bucket, tags)


def _object_view(client: Minio, bucket: str, prefix: str | None = None) -> dict[str, Any]:
    view = {}
    for obj in client.list_objects(bucket, prefix=prefix, recursive=True):
        key = obj.object_name or ""
        response = client.get_object(bucket, key)
        try:
            headers = {k.lower(): v for k, v in response.headers.items()}
            data = response.read()
        finally:
            response.close()
            response.release_conn()
        kept = {
            k: v
            for k, v in headers.items()
            if k.startswith("x-amz-meta-")
            or k in ("content-type", "cache-control", "content-disposition")
        }
        view[key] = (data, kept)
    return view


def test_minio_round_trip_keeps_bytes_metadata_and_bucket_settings(
    buckets: Buckets, store: S3Config, tmp_path: Path
) -> None:
    client = buckets.client
    src = buckets.name("src")
    _fill_bucket(client, src)
    expected = _object_view(client, src)
    assert expected["readme.txt"][1]["x-amz-meta-owner"] == "alice"

    archive = backup_minio(store, tmp_path, scopes=[BucketScope(src)]).path
    dataset = read_archive(archive).manifest.dataset(src)
    assert dataset is not None
    assert dataset.counts["objects"] == len(OBJECTS)

    copy = buckets.name("copy")
    [restored] = restore_minio(store, archive, into=copy).datasets
    assert restored.ok
    assert f"created bucket {copy}" in restored.notes
    assert _object_view(client, copy) == expected
    assert client.get_bucket_versioning(copy).status == ENABLED
    policy = json.loads(client.get_bucket_policy(copy))
    assert policy["Statement"][0]["Resource"] in (
        f"arn:aws:s3:::{copy}/boards/*",
        [f"arn:aws:s3:::{copy}/boards/*"],
    )
    copy_tags = client.get_bucket_tags(copy)
    assert copy_tags is not None
    assert dict(copy_tags) == {"team": "core"}

    with pytest.raises(RestoreRefused, match=rf"{src} already holds objects"):
        restore_minio(store, archive)
    assert _object_view(client, src) == expected


def test_minio_service_prefixes_only(buckets: Buckets, store: S3Config, tmp_path: Path) -> None:
    client = buckets.client
    src = buckets.name("shared")
    _fill_bucket(client, src)
    archive = backup_minio(store, tmp_path, scopes=[BucketScope(src, ("boards/",))]).path
    assert [d.name for d in read_archive(archive).manifest.datasets] == [f"{src}:boards/"]

    other = buckets.name("other")
    restore_minio(store, archive, into=other)
    assert sorted(_object_view(client, other)) == ["boards/1/attach.bin", "boards/2/empty"]

    client.put_object(src, "boards/3/new", io.BytesIO(b"n"), 1)
    with pytest.raises(RestoreRefused, match="under boards/"):
        restore_minio(store, archive)
    [restored] = restore_minio(store, archive, force=True).datasets
    assert any("deleted 1 object(s)" in n for n in restored.notes), restored.notes
    assert sorted(_object_view(client, src, "boards/")) == ["boards/1/attach.bin", "boards/2/empty"]
    assert "readme.txt" in _object_view(client, src), "other prefixes are left alone"


def test_minio_drill_passes_then_fails_on_damage(
    stack: Stack, buckets: Buckets, store: S3Config, tmp_path: Path
) -> None:
    src = buckets.name("drill")
    _fill_bucket(buckets.client, src)
    archive = backup_minio(store, tmp_path, scopes=[BucketScope(src)]).path
    before = {b.name for b in buckets.client.list_buckets()}
    assert jobs.drill(stack, "minio", dest=tmp_path).ok
    flip_byte(archive / "objects.tar.gz", offset=4000)
    assert not jobs.drill(stack, "minio", dest=tmp_path).ok
    assert {b.name for b in buckets.client.list_buckets()} == before, "scratch buckets removed"


# -- faults -----------------------------------------------------------------


@pytest.mark.lifecycle
def test_container_stopped_mid_backup_leaves_no_archive(
    throwaway_env: Path, tmp_path: Path
) -> None:
    started = run_inv("up", "--service", "postgres", "--no-provision", env_file=throwaway_env)
    assert started.returncode == 0, started.stdout + started.stderr
    other = Stack(
        load_stack_settings(throwaway_env, environ=isolated_environ()),
        StackPaths.for_root(ROOT, throwaway_env),
    )
    source = PostgresSource.from_stack(other)
    with psycopg.connect(**source.config.connect_kwargs(autocommit=True)) as conn:
        conn.execute("CREATE DATABASE bkfault")
    with psycopg.connect(**source.config.connect_kwargs(autocommit=True, dbname="bkfault")) as conn:
        conn.execute("CREATE UNLOGGED TABLE big (id bigint, a text, b text)")
        conn.execute(
            "INSERT INTO big SELECT g, md5(g::text) || md5((g * 7)::text), "
            "repeat(md5((g * 3)::text), 3) FROM generate_series(1, 1000000) g"
        )
        size = conn.execute("SELECT pg_database_size('bkfault')").fetchone()
    assert size is not None
    assert size[0] > 190_000_000

    dest = tmp_path / "backups"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # The slowest compression widens the window in which the stop lands.
        running = pool.submit(
            backup_postgres, source, dest, databases=["bkfault"], compress="gzip:9"
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            dumps = list(dest.glob(".tmp-*/*.dump"))
            if dumps and dumps[0].stat().st_size > 0:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the dump never started")
        other.stop(["postgres"])
        failure = running.exception(timeout=60)

    assert isinstance(failure, BackupError), repr(failure)
    assert "bkfault" in str(failure)
    assert latest(dest, "postgres") is None
    assert list(dest.iterdir()) == [], "the unfinished archive was removed"
