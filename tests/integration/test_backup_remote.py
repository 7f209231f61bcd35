"""Archives in an S3 bucket (the stack's MinIO): upload, listing, retention, restore.

Each test uses its own ``test-<tag>-backups`` bucket, removed afterwards, and
runs the tasks under a throwaway project name, so the local copies land in
``backups/<that name>/`` (also removed) and ``--keep`` never touches the
checkout's own archives. Redis DBs 10, 12 and 13 (scratch DBs of the backup tests) are emptied before and after.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from minio import Minio
from minio.deleteobjects import DeleteObject

from infra_lib.backup.redis import backup_redis
from infra_lib.backup.remote import (
    RemoteStore,
    S3Location,
    list_remote,
    upload_archive,
)
from infra_lib.redis.config import RedisConfig
from infra_lib.stack.compose import Stack
from infra_lib.stack.settings import load_stack_settings
from infra_lib.storage.config import S3Config

from .conftest import ROOT

pytestmark = pytest.mark.integration

SOURCE_DB = 10
SCRATCH_DB = 12


@pytest.fixture
def project() -> Iterator[str]:
    name = f"infra-bk{uuid.uuid4().hex[:6]}"
    yield name
    shutil.rmtree(ROOT / "backups" / name, ignore_errors=True)
    shutil.rmtree(ROOT / "env" / name, ignore_errors=True)


def inv(project: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a task as a user would, with local archives under ``backups/<project>``."""
    env = {**os.environ, "COMPOSE_PROJECT_NAME": project}
    env.pop("BACKUP_S3_ENDPOINT", None)
    # Another project name looks for secrets under its own name; these runs
    # use the running stack's servers, so they get its secrets folder.
    main = load_stack_settings(ROOT / ".env", environ=os.environ)
    env["INFRA_SECRETS_DIR"] = str(main.secrets_dir)
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )


@pytest.fixture
def store(stack: Stack) -> Iterator[RemoteStore]:
    config = S3Config.from_stack(stack.settings)
    bucket = f"test-{uuid.uuid4().hex[:8]}-backups"
    yield RemoteStore(config, S3Location(bucket, "team"))
    client = config.client()
    if client.bucket_exists(bucket):
        names = [
            DeleteObject(o.object_name)
            for o in client.list_objects(bucket, recursive=True)
            if o.object_name is not None
        ]
        assert not list(client.remove_objects(bucket, names))
        client.remove_bucket(bucket)


@pytest.fixture
def rdb(stack: Stack) -> Iterator[dict[int, redis.Redis]]:
    config = RedisConfig.from_stack(stack.settings)
    clients = {db: config.client(db) for db in (SOURCE_DB, SCRATCH_DB, 13)}
    for client in clients.values():
        client.flushdb()
    yield clients
    for client in clients.values():
        client.flushdb()
        client.close()


def _objects(client: Minio, location: S3Location, name: str) -> set[str]:
    base = location.key(name) + "/"
    return {
        o.object_name[len(base) :]
        for o in client.list_objects(location.bucket, prefix=base, recursive=True)
        if o.object_name is not None
    }


def _redis_archive(stack: Stack, rdb: dict[int, redis.Redis], tmp_path: Path) -> Path:
    source = rdb[SOURCE_DB]
    source.set("greeting", "hello")
    source.rpush("queue", "a", "b", "c")
    source.hset("user:1", mapping={"name": "Ada", "role": "admin"})
    return backup_redis(RedisConfig.from_stack(stack.settings), tmp_path, dbs=[SOURCE_DB]).path


def _assert_sample_restored(scratch: redis.Redis, project: str) -> None:
    """The sample data of _redis_archive is in ``scratch``; no download dir is left."""
    assert scratch.get("greeting") == b"hello"
    assert scratch.lrange("queue", 0, -1) == [b"a", b"b", b"c"]
    assert scratch.hgetall("user:1") == {b"name": b"Ada", b"role": b"admin"}
    downloads = ROOT / "backups" / project
    assert not [p for p in downloads.iterdir() if p.name.startswith(".restore-")]


def test_backup_to_s3_uploads_lists_and_keeps_n(store: RemoteStore, project: str) -> None:
    url = str(store.location)
    made = inv(project, "backup", "--target", "redis", "--to", url, "--quiet")
    assert made.returncode == 0, made.stdout + made.stderr
    local, uploaded = made.stdout.strip().splitlines()[-2:]
    name = Path(local).name
    assert Path(local).parent == ROOT / "backups" / project
    assert (Path(local) / "manifest.json").is_file()  # the local copy stays
    assert uploaded == f"{url}/{name}"
    remote_files = _objects(store.config.client(), store.location, name)
    assert "manifest.json" in remote_files
    assert remote_files == {p.name for p in Path(local).iterdir()}

    listed = inv(project, "backups", "--dir", url)
    assert listed.returncode == 0, listed.stderr
    assert name in listed.stdout
    assert "service:" not in listed.stdout and "all" in listed.stdout

    for _ in range(2):
        again = inv(project, "backup", "--target", "redis", "--to", url, "--keep", "2", "--quiet")
        assert again.returncode == 0, again.stdout + again.stderr
    remaining = list_remote(store, "redis")
    assert len(remaining) == 2
    assert name not in {a.name for a in remaining}
    local_left = sorted(p.name for p in (ROOT / "backups" / project).glob("*-redis*"))
    assert local_left == sorted(a.name for a in remaining)


def test_upload_without_manifest_is_neither_listed_nor_latest(
    stack: Stack,
    store: RemoteStore,
    rdb: dict[int, redis.Redis],
    project: str,
    tmp_path: Path,
) -> None:
    from infra_lib.backup.archive import read_archive

    complete = read_archive(_redis_archive(stack, rdb, tmp_path))
    upload_archive(store, complete)
    rdb[SOURCE_DB].set("later", "only in the unfinished upload")
    unfinished = read_archive(
        backup_redis(RedisConfig.from_stack(stack.settings), tmp_path, dbs=[SOURCE_DB]).path
    )
    assert unfinished.name != complete.name
    upload_archive(store, unfinished, with_manifest=False)
    client = store.config.client()
    assert _objects(client, store.location, unfinished.name)  # its data files are there
    assert "manifest.json" not in _objects(client, store.location, unfinished.name)

    assert [a.name for a in list_remote(store)] == [complete.name]
    listed = inv(project, "backups", "--dir", str(store.location))
    assert complete.name in listed.stdout and unfinished.name not in listed.stdout

    restored = inv(
        project,
        "restore",
        "--target",
        "redis",
        "--dir",
        str(store.location),
        "--into",
        str(SCRATCH_DB),
    )
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert complete.name in restored.stdout
    assert rdb[SCRATCH_DB].get("later") is None
    assert rdb[SCRATCH_DB].get("greeting") == b"hello"

    named = inv(
        project,
        "restore",
        "--target",
        "redis",
        "--from",
        f"{store.location}/{unfinished.name}",
        "--into",
        "13",
    )
    assert named.returncode != 0
    assert "manifest.json" in named.stderr


def test_restore_from_s3_into_a_scratch_db(
    stack: Stack,
    store: RemoteStore,
    rdb: dict[int, redis.Redis],
    project: str,
    tmp_path: Path,
) -> None:
    from infra_lib.backup.archive import read_archive

    archive = read_archive(_redis_archive(stack, rdb, tmp_path))
    url = upload_archive(store, archive)
    assert rdb[SCRATCH_DB].dbsize() == 0

    result = inv(project, "restore", "--target", "redis", "--from", url, "--into", str(SCRATCH_DB))
    assert result.returncode == 0, result.stdout + result.stderr
    _assert_sample_restored(rdb[SCRATCH_DB], project)


def test_restore_of_a_corrupted_remote_archive_is_refused(
    stack: Stack,
    store: RemoteStore,
    rdb: dict[int, redis.Redis],
    project: str,
    tmp_path: Path,
) -> None:
    import io

    from infra_lib.backup.archive import read_archive

    archive = read_archive(_redis_archive(stack, rdb, tmp_path))
    url = upload_archive(store, archive)
    data = archive.manifest.files[0]
    original = (archive.path / data.name).read_bytes()
    damaged = bytes(b ^ 0x20 for b in original)
    assert len(damaged) == data.size
    store.config.client().put_object(
        store.location.bucket,
        store.location.key(archive.name, data.name),
        io.BytesIO(damaged),
        len(damaged),
    )

    result = inv(
        project, "restore", "--target", "redis", "--from", url, "--into", str(SCRATCH_DB), "--force"
    )
    assert result.returncode != 0
    assert "sha256" in result.stderr
    assert rdb[SCRATCH_DB].dbsize() == 0
    local = ROOT / "backups" / project
    assert not local.exists() or not [p for p in local.iterdir() if p.name.startswith(".restore-")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("backup", "--target", "redis", "--to", "s3://Bad_Bucket/x"), "invalid bucket name"),
        (("backups", "--dir", "s3://test-ok-backups/a/../b"), "'..'"),
        (("restore", "--target", "redis", "--from", "s3:///prefix"), "names no bucket"),
        (("backups", "--dir", "s3://user:pw@test-ok-backups/a"), "without credentials"),
    ],
)
def test_bad_s3_url_exits_2_with_a_clear_message(
    project: str, args: tuple[str, ...], message: str
) -> None:
    result = inv(project, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr


def test_minio_backup_leaves_out_its_own_destination_bucket(
    store: RemoteStore, project: str
) -> None:
    store.config.client().make_bucket(store.location.bucket)
    made = inv(project, "backup", "--target", "minio", "--to", str(store.location), "--quiet")
    assert made.returncode == 0, made.stdout + made.stderr
    [archive] = list_remote(store, "minio")
    assert archive.manifest.datasets  # the stack's own buckets are there
    assert store.location.bucket not in {d.name for d in archive.manifest.datasets}


PASSPHRASE = "a long test passphrase, not for real data"


def inv_with(project: str, passphrase: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    """:func:`inv` with ``BACKUP_PASSPHRASE`` set to ``passphrase``, or unset."""
    saved = os.environ.pop("BACKUP_PASSPHRASE", None)
    try:
        if passphrase is not None:
            os.environ["BACKUP_PASSPHRASE"] = passphrase
        return inv(project, *args)
    finally:
        os.environ.pop("BACKUP_PASSPHRASE", None)
        if saved is not None:
            os.environ["BACKUP_PASSPHRASE"] = saved


def test_encrypted_backup_uploads_no_plaintext(
    store: RemoteStore, rdb: dict[int, redis.Redis], project: str
) -> None:
    import json

    source = rdb[SOURCE_DB]
    source.set("greeting", "hello")
    source.rpush("queue", "a", "b", "c")
    made = inv_with(
        project,
        PASSPHRASE,
        "backup",
        "--target",
        "redis",
        "--to",
        str(store.location),
        "--encrypt",
        "--quiet",
    )
    assert made.returncode == 0, made.stdout + made.stderr
    local, _ = made.stdout.strip().splitlines()[-2:]
    name = Path(local).name

    [archive] = list_remote(store, "redis")
    assert archive.name == name and archive.encryption is not None
    client = store.config.client()
    bucket = store.location.bucket
    raw_manifest = client.get_object(bucket, store.location.key(name, "manifest.json")).read()
    manifest = json.loads(raw_manifest)
    assert manifest["encryption"]["algorithm"] == "AES-256-GCM"
    assert manifest["encryption"]["kdf"] == "scrypt"
    assert PASSPHRASE.encode() not in raw_manifest
    # Sizes and checksums in the manifest are those of the local, plaintext files.
    assert _objects(client, store.location, name) == {p.name for p in Path(local).iterdir()}
    for entry in archive.manifest.files:
        plain = (Path(local) / entry.name).read_bytes()
        assert entry.size == len(plain)
        stored = client.get_object(bucket, store.location.key(name, entry.name)).read()
        assert stored != plain and len(stored) > len(plain)
        assert plain[:2] == b"\x1f\x8b" and b"\x1f\x8b\x08" not in stored[:64]
        assert b"greeting" not in stored

    listed = inv(project, "backups", "--dir", str(store.location))
    assert listed.returncode == 0 and name in listed.stdout


def test_encrypted_archive_restores_only_with_its_passphrase(
    stack: Stack,
    store: RemoteStore,
    rdb: dict[int, redis.Redis],
    project: str,
    tmp_path: Path,
) -> None:
    from infra_lib.backup.archive import read_archive
    from infra_lib.backup.crypto import Passphrase

    archive = read_archive(_redis_archive(stack, rdb, tmp_path))
    url = upload_archive(store, archive, passphrase=Passphrase(PASSPHRASE))
    rdb[13].set("untouched", "yes")

    for passphrase, code in (("not the passphrase it was made with", 1), (None, 2)):
        refused = inv_with(
            project,
            passphrase,
            "restore",
            "--target",
            "redis",
            "--from",
            url,
            "--into",
            "13",
            "--force",
        )
        assert refused.returncode == code, refused.stdout + refused.stderr
        expected = (
            "wrong passphrase, or the archive was altered" if code == 1 else "BACKUP_PASSPHRASE"
        )
        assert expected in refused.stderr
        assert rdb[13].keys() == [b"untouched"]

    restored = inv_with(
        project, PASSPHRASE, "restore", "--target", "redis", "--from", url, "--into", "12"
    )
    assert restored.returncode == 0, restored.stdout + restored.stderr
    _assert_sample_restored(rdb[SCRATCH_DB], project)


def test_a_tampered_encrypted_chunk_is_refused(
    stack: Stack,
    store: RemoteStore,
    rdb: dict[int, redis.Redis],
    project: str,
    tmp_path: Path,
) -> None:
    import io

    from infra_lib.backup.archive import read_archive
    from infra_lib.backup.crypto import Passphrase

    archive = read_archive(_redis_archive(stack, rdb, tmp_path))
    url = upload_archive(store, archive, passphrase=Passphrase(PASSPHRASE))
    client = store.config.client()
    key = store.location.key(archive.name, archive.manifest.files[0].name)
    stored = bytearray(client.get_object(store.location.bucket, key).read())
    stored[-20] ^= 0x01
    client.put_object(store.location.bucket, key, io.BytesIO(bytes(stored)), len(stored))

    result = inv_with(
        project, PASSPHRASE, "restore", "--target", "redis", "--from", url, "--into", "12"
    )
    assert result.returncode != 0
    assert "wrong passphrase, or the archive was altered" in result.stderr
    assert rdb[SCRATCH_DB].dbsize() == 0


@pytest.mark.parametrize(
    ("passphrase", "args", "message"),
    [
        (None, ("--to", "s3://test-ok-backups/x"), "BACKUP_PASSPHRASE"),
        ("", ("--to", "s3://test-ok-backups/x"), "BACKUP_PASSPHRASE"),
        ("too-short", ("--to", "s3://test-ok-backups/x"), "shorter than 12"),
        (PASSPHRASE, (), "--to s3://"),
    ],
)
def test_encrypt_without_a_usable_passphrase_exits_2(
    project: str, passphrase: str | None, args: tuple[str, ...], message: str
) -> None:
    result = inv_with(
        project, passphrase, "backup", "--target", "redis", *args, "--encrypt", "--quiet"
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert not (ROOT / "backups" / project).exists()
