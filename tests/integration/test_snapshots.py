"""`inv snapshot` against the real stack: board-service's database, Redis keys and objects."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from infra_lib.postgres.config import PostgresConfig
from infra_lib.postgres.snapshots import SNAPSHOT_PREFIX, Snapshots
from infra_lib.provisioning import env_path, read_service_env
from infra_lib.redis.config import RedisConfig
from infra_lib.service import ServiceSettings
from infra_lib.stack.compose import Stack
from tests.integration.conftest import ROOT, run_inv

pytestmark = pytest.mark.integration

SERVICE = "board-service"
TABLE = "snapshot_probe"


def _url(stack: Stack) -> str:
    return read_service_env(ROOT / "env" / stack.project_name, SERVICE).values["DATABASE_URL"]


def _rows(stack: Stack) -> list[int]:
    with psycopg.connect(_url(stack), connect_timeout=5) as conn:
        found = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", ("public.snapshot_probe",)
        ).fetchone()
        if not found or not found[0]:
            return []
        return [r[0] for r in conn.execute("SELECT n FROM snapshot_probe ORDER BY n")]


@pytest.fixture
def name(stack: Stack) -> Iterator[str]:
    """A fresh snapshot name; the snapshot and the probe table are removed afterwards."""
    label = f"t-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_url(stack), connect_timeout=5, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS snapshot_probe")
        conn.execute("CREATE TABLE snapshot_probe (n int)")
        conn.execute("INSERT INTO snapshot_probe VALUES (1), (2), (3)")
    yield label
    removed = run_inv("snapshot", "rm", label)
    assert removed.returncode == 0 or "no snapshot named" in removed.stderr, removed.stderr
    with psycopg.connect(_url(stack), connect_timeout=5, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS snapshot_probe")


def test_save_change_restore_gives_back_the_rows_and_the_grants(stack: Stack, name: str) -> None:
    saved = run_inv("snapshot", "save", name, "--service", SERVICE)
    assert saved.returncode == 0, saved.stdout + saved.stderr
    assert "not a backup" in saved.stdout
    with psycopg.connect(_url(stack), connect_timeout=5, autocommit=True) as conn:
        conn.execute("DELETE FROM snapshot_probe WHERE n > 1")
        conn.execute("INSERT INTO snapshot_probe VALUES (99)")
    assert _rows(stack) == [1, 99]

    listed = run_inv("snapshots")
    assert listed.returncode == 0 and name in listed.stdout, listed.stdout + listed.stderr

    restored = run_inv("snapshot", "restore", "latest")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert name in restored.stdout
    # The service's own role logs in and reads its table: owner and grants are back.
    assert _rows(stack) == [1, 2, 3]
    admin = PostgresConfig.from_stack(stack.settings)
    with psycopg.connect(**admin.connect_kwargs(autocommit=True)) as conn:
        acl = conn.execute(
            "SELECT datacl::text, pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
            (read_service_env(ROOT / "env" / stack.project_name, SERVICE).values["PGDATABASE"],),
        ).fetchone()
    assert acl is not None
    assert "=c/" not in (acl[0] or ""), "PUBLIC may not connect to a service database"
    # Restoring again keeps working: the snapshot stays.
    again = run_inv("snapshot", "restore", name, "--service", SERVICE)
    assert again.returncode == 0, again.stdout + again.stderr

    removed = run_inv("snapshot", "rm", name)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not Snapshots(admin).find(name)


def test_a_taken_name_and_an_unknown_one_are_refused(stack: Stack, name: str) -> None:
    assert run_inv("snapshot", "save", name, "--service", SERVICE).returncode == 0
    twice = run_inv("snapshot", "save", name, "--service", SERVICE)
    assert twice.returncode != 0
    assert "exists" in twice.stdout + twice.stderr
    unknown = run_inv("snapshot", "restore", "no-such-snapshot")
    assert unknown.returncode != 0
    assert "no snapshot named 'no-such-snapshot'" in unknown.stdout + unknown.stderr
    for bad_name in ("Bad Name!", "latest"):
        bad = run_inv("snapshot", "save", bad_name)
        assert bad.returncode != 0
        assert "invalid snapshot name" in bad.stdout + bad.stderr
    assert _rows(stack) == [1, 2, 3]


def test_a_snapshot_of_another_major_version_is_refused_and_nothing_changes(
    stack: Stack, name: str
) -> None:
    admin = PostgresConfig.from_stack(stack.settings)
    snapshots = Snapshots(admin)
    assert run_inv("snapshot", "save", name, "--service", SERVICE).returncode == 0
    (part,) = snapshots.find(name)
    assert part.copy.startswith(SNAPSHOT_PREFIX)
    meta = {
        "snapshot": name,
        "service": part.service,
        "database": part.database,
        "owner": part.owner,
        "created": part.created.isoformat(),
        "server_major": part.server_major - 1,
    }
    with psycopg.connect(**admin.connect_kwargs(autocommit=True)) as conn:
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(part.copy), sql.Literal(json.dumps(meta))
            )
        )
    with psycopg.connect(_url(stack), connect_timeout=5, autocommit=True) as conn:
        conn.execute("INSERT INTO snapshot_probe VALUES (4)")
    refused = run_inv("snapshot", "restore", name)
    assert refused.returncode != 0
    assert f"made on PostgreSQL {part.server_major - 1}" in refused.stdout + refused.stderr
    assert _rows(stack) == [1, 2, 3, 4]


def test_a_restore_interrupted_after_setting_the_data_aside_is_finished_not_lost(
    stack: Stack, name: str
) -> None:
    from infra_lib.postgres.snapshots import _copy_name

    admin = PostgresConfig.from_stack(stack.settings)
    assert run_inv("snapshot", "save", name, "--service", SERVICE).returncode == 0
    database = read_service_env(ROOT / "env" / stack.project_name, SERVICE).values["PGDATABASE"]
    aside = _copy_name("\0aside", database)
    # As if the task died right after renaming the live database aside.
    with psycopg.connect(**admin.connect_kwargs(autocommit=True)) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (database,),
        )
        conn.execute(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(database), sql.Identifier(aside)
            )
        )
    finished = run_inv("snapshot", "restore", name)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert _rows(stack) == [1, 2, 3]
    with psycopg.connect(**admin.connect_kwargs(autocommit=True)) as conn:
        left = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (aside,)).fetchone()
    assert left is None


def _board(stack: Stack) -> ServiceSettings:
    return ServiceSettings.load(env_path(ROOT / "env" / stack.project_name, SERVICE), environ={})


def _keys(stack: Stack, board: ServiceSettings) -> dict[str, Any]:
    """board-service's keys as the admin sees them: type, value and TTL in seconds."""
    found: dict[str, Any] = {}
    admin = RedisConfig.from_stack(stack.settings)
    with admin.client(int(board.require("REDIS_DB")), decode_responses=True) as client:
        for key in sorted(client.scan_iter(match=board.redis_key_prefix + "*")):
            kind = client.type(key)
            value: Any = {
                "string": lambda k: client.get(k),
                "list": lambda k: client.lrange(k, 0, -1),
                "hash": lambda k: client.hgetall(k),
                "set": lambda k: sorted(client.smembers(k)),
                "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
            }[kind](key)
            found[key] = (kind, value, client.ttl(key))
    return found


def _objects(board: ServiceSettings) -> dict[str, bytes]:
    s3 = board.s3_config().client()
    found: dict[str, bytes] = {}
    for prefix in board.prefixes:
        for item in s3.list_objects(board.bucket, prefix=prefix, recursive=True):
            response = s3.get_object(board.bucket, str(item.object_name))
            try:
                found[str(item.object_name)] = response.read()
            finally:
                response.close()
                response.release_conn()
    return found


def _same_keys(now: dict[str, Any], saved: dict[str, Any]) -> None:
    assert now.keys() == saved.keys()
    for key, (kind, value, ttl) in saved.items():
        assert now[key][:2] == (kind, value), key
        # The TTL left at saving is given back; a few seconds pass in between.
        assert (now[key][2] < 0) == (ttl < 0), key
        assert abs(now[key][2] - ttl) <= 5, key


def board_names(board: ServiceSettings) -> list[str]:
    """The probe keys' names after the prefix: string, list, hash, sorted set, one added later."""
    return [f"snapshot-probe-{n}" for n in ("string", "list", "hash", "zset", "added")]


def object_names(board: ServiceSettings) -> list[str]:
    """The probe objects: two saved, one added later."""
    return [f"{board.prefixes[0]}snapshot-probe/{n}" for n in ("a.txt", "b.bin", "added")]


@pytest.fixture
def board_data(stack: Stack) -> Iterator[ServiceSettings]:
    """Keys of four types (one with a TTL) and two objects of board-service; removed after."""
    board = _board(stack)
    names = [f"{board.redis_key_prefix}{n}" for n in board_names(board)]
    with board.redis() as client:
        client.set(names[0], "text", ex=600)
        client.rpush(names[1], "a", "b", "c")
        client.hset(names[2], mapping={"title": "plan", "owner": "ann"})
        client.zadd(names[3], {"x": 1.5, "y": 2})
    s3 = board.s3_config().client()
    keys = object_names(board)
    for key, body in zip(keys, (b"first", bytes(range(256)) * 64), strict=False):
        s3.put_object(board.bucket, key, io.BytesIO(body), len(body))
    yield board
    with board.redis() as client:
        client.delete(*names)
    for key in keys:
        s3.remove_object(board.bucket, key)


def test_a_snapshot_gives_back_exactly_the_rows_keys_with_ttls_and_objects(
    stack: Stack, name: str, board_data: ServiceSettings
) -> None:
    board = board_data
    admin = RedisConfig.from_stack(stack.settings)
    neighbour = "chat-service:snapshot-neighbour"
    db = int(board.require("REDIS_DB"))
    saved_keys, saved_objects = _keys(stack, board), _objects(board)
    assert len(saved_keys) >= 4 and len(saved_objects) >= 2
    saved = run_inv("snapshot", "save", name, "--service", SERVICE)
    assert saved.returncode == 0, saved.stdout + saved.stderr
    # Destructive changes in every store, and a key of another service in the same DB.
    with admin.client(db) as client:
        client.set(neighbour, "kept")
    with psycopg.connect(_url(stack), connect_timeout=5, autocommit=True) as conn:
        conn.execute("DELETE FROM snapshot_probe")
    string, listed, hashed, _, added = (f"{board.redis_key_prefix}{n}" for n in board_names(board))
    with board.redis() as client:
        client.delete(hashed)
        client.persist(string)
        client.rpush(listed, "d")
        client.set(added, "added")
    s3 = board.s3_config().client()
    first_object, second_object, new_object = object_names(board)
    s3.remove_object(board.bucket, first_object)
    s3.put_object(board.bucket, second_object, io.BytesIO(b"changed"), 7)
    s3.put_object(board.bucket, new_object, io.BytesIO(b"+"), 1)
    assert _keys(stack, board) != saved_keys and _objects(board) != saved_objects

    restored = run_inv("snapshot", "restore", name, "--service", SERVICE)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert _rows(stack) == [1, 2, 3]
    _same_keys(_keys(stack, board), saved_keys)
    assert _objects(board) == saved_objects
    with admin.client(db) as client:
        assert client.get(neighbour) == b"kept"
        client.delete(neighbour)


def test_a_damaged_key_snapshot_is_refused_before_any_store_changes(
    stack: Stack, name: str, board_data: ServiceSettings
) -> None:
    board = board_data
    assert run_inv("snapshot", "save", name, "--service", SERVICE).returncode == 0
    folder = ROOT / "env" / stack.project_name / "snapshots" / name
    keys_file = folder / f"redis-{SERVICE}.jsonl"
    assert keys_file.stat().st_mode & 0o777 == 0o600
    assert folder.stat().st_mode & 0o777 == 0o700
    # Cut short, as by a full disk: the last key is missing.
    lines = keys_file.read_text().splitlines()
    keys_file.write_text("\n".join(lines[:-1]) + "\n")
    with psycopg.connect(_url(stack), connect_timeout=5, autocommit=True) as conn:
        conn.execute("INSERT INTO snapshot_probe VALUES (4)")
    before_keys, before_objects = _keys(stack, board), _objects(board)
    refused = run_inv("snapshot", "restore", name)
    assert refused.returncode != 0
    assert "cannot be read" in refused.stdout + refused.stderr
    assert _rows(stack) == [1, 2, 3, 4]
    # Listed as damaged, not hiding the other snapshots; the fixture removes it.
    listed = run_inv("snapshots", "--name", name)
    assert listed.returncode == 0, listed.stderr
    assert "DAMAGED" in listed.stdout
    assert _keys(stack, board).keys() == before_keys.keys()
    assert _objects(board) == before_objects
