"""Archives changed by someone else: every field is checked before a server sees it.

Local archives are rewritten the way someone with write access to the
backup directory would (file and manifest checksum together); remote ones
by replacing objects in the bucket, without the passphrase. Each refusal
must come before any change: no role, no database, no key, no bucket.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from minio.deleteobjects import DeleteObject
from psycopg import sql

from infra_lib.backup.archive import MANIFEST_NAME, read_archive
from infra_lib.backup.crypto import Passphrase
from infra_lib.backup.minio import BucketScope, backup_minio, restore_minio
from infra_lib.backup.postgres import PostgresSource, backup_postgres, restore_postgres
from infra_lib.backup.redis import backup_redis, restore_redis
from infra_lib.backup.remote import RemoteStore, S3Location, upload_archive
from infra_lib.errors import BackupCorrupt, BackupError, RestoreRefused
from infra_lib.postgres.config import PostgresConfig
from infra_lib.redis.config import RedisConfig
from infra_lib.stack.compose import Stack
from infra_lib.storage.config import S3Config

from .conftest import ROOT

pytestmark = pytest.mark.integration

PASSPHRASE = "a long test passphrase, not for real data"
INJECTION = "CONNECT ON DATABASE postgres TO PUBLIC; CREATE ROLE {evil} SUPERUSER LOGIN; --"
#: Scratch Redis DBs of the backup tests (the services hold 0-4).
SOURCE_DB, TARGET_DB = 11, 13


# -- helpers ----------------------------------------------------------------


class Pg:
    """Databases and roles for one test (all named ``tp<tag>_*``), dropped afterwards."""

    def __init__(self, config: PostgresConfig) -> None:
        self.config = config
        self.tag = uuid.uuid4().hex[:6]

    def name(self, label: str) -> str:
        return f"tp{self.tag}_{label}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(**self.config.connect_kwargs(autocommit=True, dbname=dbname))

    def run(self, statement: sql.Composable, dbname: str = "postgres") -> None:
        with self.connect(dbname) as conn:
            conn.execute(statement)

    def catalog(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Every role with its attributes, and every database: what a refusal must not change."""
        with self.connect() as conn:
            roles = conn.execute(
                "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, "
                "rolbypassrls, rolcanlogin FROM pg_roles ORDER BY 1"
            ).fetchall()
            databases = conn.execute("SELECT datname FROM pg_database ORDER BY 1").fetchall()
        return roles, databases

    def role_exists(self, name: str) -> bool:
        with self.connect() as conn:
            return (
                conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone()
                is not None
            )

    def cleanup(self) -> None:
        like = f"tp{self.tag}\\_%"
        with self.connect() as conn:
            for (db,) in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", [like]
            ).fetchall():
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db)))
            for (role,) in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE %s", [like]
            ).fetchall():
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def pg(stack: Stack) -> Iterator[Pg]:
    scratch = Pg(PostgresConfig.from_stack(stack.settings))
    yield scratch
    scratch.cleanup()


@pytest.fixture
def pg_source(stack: Stack) -> PostgresSource:
    return PostgresSource.from_stack(stack)


def _pg_archive(pg: Pg, source: PostgresSource, dest: Path) -> tuple[Path, str, str]:
    """An archive of one small database owned by a role of its own, with a CONNECT grant."""
    owner, reader, db = pg.name("owner"), pg.name("reader"), pg.name("src")
    pg.run(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'owner-pw'").format(sql.Identifier(owner)))
    pg.run(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(reader)))
    pg.run(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(owner)))
    pg.run(
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(db), sql.Identifier(reader)
        )
    )
    pg.run(
        sql.SQL("SET ROLE {}; CREATE TABLE item (id int); INSERT INTO item VALUES (1), (2)").format(
            sql.Identifier(owner)
        ),
        db,
    )
    return backup_postgres(source, dest, databases=[db]).path, db, owner


def _edit_manifest(archive: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = archive / MANIFEST_NAME
    data = json.loads(path.read_bytes())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def _rewrite_file(archive: Path, name: str, body: bytes) -> None:
    """Replace a data file and fix its manifest entry, as a writer of the directory could."""
    (archive / name).write_bytes(body)

    def fix(data: dict[str, Any]) -> None:
        for entry in data["files"]:
            if entry["name"] == name:
                entry["size"] = len(body)
                entry["sha256"] = hashlib.sha256(body).hexdigest()

    _edit_manifest(archive, fix)


def _acl(data: dict[str, Any]) -> list[dict[str, Any]]:
    acl: list[dict[str, Any]] = data["datasets"][0]["details"]["acl"]
    return acl


# -- local archives: PostgreSQL ----------------------------------------------


def test_sql_in_a_privilege_is_refused_before_any_change(
    pg: Pg, pg_source: PostgresSource, tmp_path: Path
) -> None:
    archive, _, _ = _pg_archive(pg, pg_source, tmp_path)
    evil = pg.name("evil")

    def inject(data: dict[str, Any]) -> None:
        _acl(data)[0]["privilege"] = INJECTION.format(evil=evil)

    _edit_manifest(archive, inject)
    before = pg.catalog()
    with pytest.raises(BackupCorrupt, match=r"acl\.0\.privilege.*not a database privilege"):
        restore_postgres(pg_source, archive, into=pg.name("copy"))
    assert not pg.role_exists(evil)
    assert pg.catalog() == before


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("owner", "x" * 64, r"details\.owner"),
        ("roles", ["pg_execute_server_program"], r"details\.roles\.0.*predefined role"),
        ("encoding", "UTF8'; DROP DATABASE postgres; --", r"details\.encoding"),
        ("connection_limit", "5", r"details\.connection_limit"),
        ("acl", [{"grantee": "PUBLIC", "privilege": "CONNECT", "grantable": "yes"}], r"grantable"),
        ("surprise", "a key no backup writes", r"details\.surprise"),
    ],
)
def test_a_tampered_database_detail_is_refused_before_any_change(
    pg: Pg, pg_source: PostgresSource, tmp_path: Path, field: str, value: Any, message: str
) -> None:
    archive, _, _ = _pg_archive(pg, pg_source, tmp_path)
    _edit_manifest(archive, lambda data: data["datasets"][0]["details"].__setitem__(field, value))
    before = pg.catalog()
    with pytest.raises(BackupCorrupt, match=message):
        restore_postgres(pg_source, archive, into=pg.name("copy"))
    assert pg.catalog() == before


def _drop_source(pg: Pg, db: str, owner: str) -> None:
    """Lose the database and its owner, so a restore must recreate the role."""
    pg.run(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db)))
    pg.run(sql.SQL("DROP ROLE {}").format(sql.Identifier(owner)))


@pytest.mark.parametrize("attribute", ["superuser", "createrole", "replication", "bypassrls"])
def test_roles_json_cannot_recreate_a_privileged_role(
    pg: Pg, pg_source: PostgresSource, tmp_path: Path, attribute: str
) -> None:
    archive, db, owner = _pg_archive(pg, pg_source, tmp_path / "a")
    pristine = tmp_path / "pristine"
    shutil.copytree(archive, pristine)
    _drop_source(pg, db, owner)
    roles = json.loads((archive / "roles.json").read_bytes())
    for role in roles["roles"]:
        if role["name"] == owner:
            role[attribute] = True
    _rewrite_file(archive, "roles.json", json.dumps(roles).encode())

    before = pg.catalog()
    with pytest.raises(RestoreRefused, match=rf"role {owner} with {attribute.upper()}"):
        restore_postgres(pg_source, archive)
    assert pg.catalog() == before
    assert not pg.role_exists(owner)

    # The archive as it was written recreates the role, without any such attribute.
    report = restore_postgres(pg_source, pristine)
    assert report.datasets[0].ok
    with pg.connect() as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin "
            "FROM pg_roles WHERE rolname = %s",
            [owner],
        ).fetchone()
    assert row == (False, False, False, False, True)


def test_roles_json_cannot_make_a_role_a_member_of_the_superuser(
    pg: Pg, pg_source: PostgresSource, tmp_path: Path
) -> None:
    archive, db, owner = _pg_archive(pg, pg_source, tmp_path)
    _drop_source(pg, db, owner)
    roles = json.loads((archive / "roles.json").read_bytes())
    roles["memberships"].append({"role": pg.config.user, "member": owner, "admin": False})
    _rewrite_file(archive, "roles.json", json.dumps(roles).encode())

    before = pg.catalog()
    with pytest.raises(RestoreRefused, match=rf"member of {pg.config.user}, a role with SUPERUSER"):
        restore_postgres(pg_source, archive)
    assert pg.catalog() == before


def test_a_file_name_outside_the_archive_is_refused(
    pg: Pg, pg_source: PostgresSource, tmp_path: Path
) -> None:
    archive, _, _ = _pg_archive(pg, pg_source, tmp_path)
    outside = tmp_path / "outside.dump"
    outside.write_bytes(b"PGDMP")

    def escape(data: dict[str, Any]) -> None:
        data["datasets"][0]["files"] = ["../outside.dump"]

    _edit_manifest(archive, escape)
    before = pg.catalog()
    with pytest.raises(BackupCorrupt, match=r"not a plain data file name"):
        restore_postgres(pg_source, archive, into=pg.name("copy"))
    assert pg.catalog() == before


# -- local archives: Redis and MinIO ------------------------------------------


@pytest.fixture
def rdb(stack: Stack) -> Iterator[dict[int, redis.Redis]]:
    config = RedisConfig.from_stack(stack.settings)
    clients = {db: config.client(db) for db in (0, SOURCE_DB, TARGET_DB)}
    for db in (SOURCE_DB, TARGET_DB):
        clients[db].flushdb()
    yield clients
    for db in (SOURCE_DB, TARGET_DB):
        clients[db].flushdb()
    for client in clients.values():
        client.close()


def _redis_archive(stack: Stack, rdb: dict[int, redis.Redis], dest: Path) -> Path:
    rdb[SOURCE_DB].set("greeting", "hello")
    rdb[SOURCE_DB].rpush("queue", "a", "b")
    return backup_redis(RedisConfig.from_stack(stack.settings), dest, dbs=[SOURCE_DB]).path


@pytest.mark.parametrize(
    ("name", "db", "message"),
    [
        (f"db{SOURCE_DB}", 0, r"does not match its details\.db 0"),
        ("db70000", 70000, r"details\.db: Input should be less than"),
        ("db-1", -1, r"details\.db: Input should be greater than or equal to 0"),
        (f"db{SOURCE_DB}", True, r"details\.db: Input should be a valid integer"),
    ],
)
def test_a_tampered_redis_db_number_is_refused_before_any_change(
    stack: Stack, rdb: dict[int, redis.Redis], tmp_path: Path, name: str, db: Any, message: str
) -> None:
    archive = _redis_archive(stack, rdb, tmp_path)

    def retarget(data: dict[str, Any]) -> None:
        data["datasets"][0]["name"] = name
        data["datasets"][0]["details"]["db"] = db

    _edit_manifest(archive, retarget)
    keys_in_db0 = rdb[0].dbsize()
    with pytest.raises(BackupCorrupt, match=message):
        restore_redis(RedisConfig.from_stack(stack.settings), archive, force=True)
    assert rdb[0].dbsize() == keys_in_db0


def test_a_redis_db_the_server_lacks_is_refused_before_any_change(
    stack: Stack, rdb: dict[int, redis.Redis], tmp_path: Path
) -> None:
    archive = _redis_archive(stack, rdb, tmp_path)

    def retarget(data: dict[str, Any]) -> None:
        data["datasets"][0]["name"] = "db9999"
        data["datasets"][0]["details"]["db"] = 9999

    _edit_manifest(archive, retarget)
    with pytest.raises(BackupError, match=r"DB 9999"):
        restore_redis(RedisConfig.from_stack(stack.settings), archive, force=True)


@pytest.fixture
def s3(stack: Stack) -> Iterator[tuple[S3Config, list[str]]]:
    config = S3Config.from_stack(stack.settings)
    made: list[str] = []
    yield config, made
    client = config.client()
    for bucket in made:
        if client.bucket_exists(bucket):
            doomed = [
                DeleteObject(o.object_name or "")
                for o in client.list_objects(bucket, recursive=True)
            ]
            assert not list(client.remove_objects(bucket, doomed))
            client.remove_bucket(bucket)


def _minio_archive(config: S3Config, made: list[str], dest: Path) -> tuple[Path, str]:
    client = config.client()
    bucket = f"tp{uuid.uuid4().hex[:6]}-src"
    made.append(bucket)
    client.make_bucket(bucket)
    client.put_object(bucket, "boards/1/a.txt", io.BytesIO(b"hello"), 5, content_type="text/plain")
    return backup_minio(config, dest, scopes=[BucketScope(bucket)]).path, bucket


def test_a_tampered_bucket_name_is_refused(s3: tuple[S3Config, list[str]], tmp_path: Path) -> None:
    config, made = s3
    archive, _ = _minio_archive(config, made, tmp_path)
    bad = "Not_A_Bucket"

    def rename(data: dict[str, Any]) -> None:
        data["datasets"][0]["name"] = bad
        data["datasets"][0]["details"]["bucket"] = bad

    _edit_manifest(archive, rename)
    with pytest.raises(BackupCorrupt, match=r"details\.bucket.*invalid bucket name"):
        restore_minio(config, archive)


def test_headers_a_backup_never_keeps_are_refused_before_any_bucket_is_made(
    s3: tuple[S3Config, list[str]], tmp_path: Path
) -> None:
    config, made = s3
    archive, _ = _minio_archive(config, made, tmp_path)
    [line] = (archive / "index.jsonl").read_bytes().splitlines()
    entry = json.loads(line)
    entry["headers"]["x-amz-website-redirect-location"] = "https://attacker.example/"
    _rewrite_file(archive, "index.jsonl", json.dumps(entry).encode() + b"\n")
    target = f"tp{uuid.uuid4().hex[:6]}-copy"
    made.append(target)

    with pytest.raises(BackupCorrupt, match=r"headers names 'x-amz-website-redirect-location'"):
        restore_minio(config, archive, into=target)
    assert not config.client().bucket_exists(target)


# -- remote archives ---------------------------------------------------------


@pytest.fixture
def store(stack: Stack) -> Iterator[RemoteStore]:
    config = S3Config.from_stack(stack.settings)
    bucket = f"test-{uuid.uuid4().hex[:8]}-backups"
    yield RemoteStore(config, S3Location(bucket, "team"))
    client = config.client()
    if client.bucket_exists(bucket):
        doomed = [
            DeleteObject(o.object_name or "") for o in client.list_objects(bucket, recursive=True)
        ]
        assert not list(client.remove_objects(bucket, doomed))
        client.remove_bucket(bucket)


def inv(passphrase: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    """A task run as a user would, on this checkout's stack, with or without a passphrase."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("BACKUP_PASSPHRASE", "BACKUP_S3_ENDPOINT")
    }
    if passphrase is not None:
        env["BACKUP_PASSPHRASE"] = passphrase
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )


def _manifest_key(store: RemoteStore, name: str) -> str:
    return store.location.key(name, MANIFEST_NAME)


def _replace_manifest(
    store: RemoteStore, name: str, change: Callable[[dict[str, Any]], None]
) -> None:
    """Swap the archive's manifest.json for an edited copy: all one can do without the passphrase."""
    client = store.config.client()
    key = _manifest_key(store, name)
    data = json.loads(client.get_object(store.location.bucket, key).read())
    change(data)
    body = json.dumps(data, indent=2).encode() + b"\n"
    client.put_object(store.location.bucket, key, io.BytesIO(body), len(body))


def _encrypted_pg_archive(
    pg: Pg, source: PostgresSource, store: RemoteStore, tmp_path: Path
) -> tuple[str, str]:
    archive, _, _ = _pg_archive(pg, source, tmp_path)
    url = upload_archive(store, read_archive(archive), passphrase=Passphrase(PASSPHRASE))
    return url, archive.name


def test_the_manifest_swap_attack_on_an_encrypted_archive_is_refused(
    pg: Pg, pg_source: PostgresSource, store: RemoteStore, tmp_path: Path
) -> None:
    url, name = _encrypted_pg_archive(pg, pg_source, store, tmp_path)
    evil = pg.name("evil")

    def inject(data: dict[str, Any]) -> None:
        _acl(data)[0]["privilege"] = INJECTION.format(evil=evil)

    _replace_manifest(store, name, inject)
    before = pg.catalog()
    result = inv(
        PASSPHRASE, "restore", "--target", "postgres", "--from", url, "--into", pg.name("copy")
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not a database privilege" in result.stderr
    assert not pg.role_exists(evil)
    assert pg.catalog() == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # Valid by every rule but the MAC: a privilege and a grant option the backup never had.
        (lambda d: _acl(d)[-1].update(privilege="CREATE", grantable=True), "does not authenticate"),
        (lambda d: d["datasets"][0]["counts"].update({"public.item": 0}), "does not authenticate"),
        (lambda d: d.pop("manifest_mac"), "has no manifest_mac"),
    ],
    ids=["grant", "count", "mac-removed"],
)
def test_any_change_to_an_encrypted_manifest_is_refused(
    pg: Pg,
    pg_source: PostgresSource,
    store: RemoteStore,
    tmp_path: Path,
    change: Callable[[dict[str, Any]], None],
    message: str,
) -> None:
    url, name = _encrypted_pg_archive(pg, pg_source, store, tmp_path)
    _replace_manifest(store, name, change)
    before = pg.catalog()
    result = inv(
        PASSPHRASE, "restore", "--target", "postgres", "--from", url, "--into", pg.name("copy")
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr
    assert pg.catalog() == before


def test_an_untampered_encrypted_archive_still_restores(
    pg: Pg, pg_source: PostgresSource, store: RemoteStore, tmp_path: Path
) -> None:
    url, _ = _encrypted_pg_archive(pg, pg_source, store, tmp_path)
    copy = pg.name("copy")
    result = inv(PASSPHRASE, "restore", "--target", "postgres", "--from", url, "--into", copy)
    assert result.returncode == 0, result.stdout + result.stderr
    with pg.connect(copy) as conn:
        assert conn.execute("SELECT count(*) FROM item").fetchone() == (2,)
        acl = conn.execute(
            "SELECT datacl::text FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    assert acl is not None and f"{pg.name('reader')}=c/" in acl[0]


def test_an_encrypted_archive_stripped_of_its_encryption_is_refused(
    stack: Stack, rdb: dict[int, redis.Redis], store: RemoteStore, tmp_path: Path
) -> None:
    archive = read_archive(_redis_archive(stack, rdb, tmp_path))
    url = upload_archive(store, archive, passphrase=Passphrase(PASSPHRASE))

    def downgrade(data: dict[str, Any]) -> None:
        del data["encryption"], data["manifest_mac"]

    _replace_manifest(store, archive.name, downgrade)
    args = ("restore", "--target", "redis", "--from", url, "--into", str(TARGET_DB), "--force")
    with_passphrase = inv(PASSPHRASE, *args)
    assert with_passphrase.returncode == 3, with_passphrase.stdout + with_passphrase.stderr
    assert "says it is not encrypted, but BACKUP_PASSPHRASE is set" in with_passphrase.stderr
    without = inv(None, *args)
    assert without.returncode == 1, without.stdout + without.stderr
    assert "an encrypted file, though the manifest says not" in without.stderr
    assert rdb[TARGET_DB].dbsize() == 0
