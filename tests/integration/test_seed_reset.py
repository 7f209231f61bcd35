"""`inv seed` and `inv reset` on the real stack, for a service of a manifest of the test's own.

The service (``seedtest-service``) is provisioned next to the reference team
from a copy of ``infra.toml``; board-service's data must come through every
reset untouched.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from infra_lib.manifest import load_manifest
from infra_lib.postgres.config import PostgresConfig
from infra_lib.provisioning import env_path
from infra_lib.redis.config import RedisConfig
from infra_lib.service import ServiceSettings
from infra_lib.stack.compose import Stack
from tests.integration.conftest import ROOT, run_inv

pytestmark = pytest.mark.integration

SERVICE = "seedtest-service"
SEED_SECTION = f"""
[services.{SERVICE}]
description = "fixture loading"
postgres = {{ database = "seedtest_db", role = "seedtest_user" }}
redis = {{ db = "auto", acl = true }}
storage = {{ prefixes = ["seedtest/"] }}
seed = {{ postgres = ["seeds/sql/*.sql"], redis = "seeds/redis.json", storage = "seeds/files/" }}
"""


@pytest.fixture(scope="module")
def manifest(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of infra.toml with the seeded service, provisioned; removed afterwards."""
    folder = tmp_path_factory.mktemp("seeded")
    path = folder / "infra.toml"
    path.write_text((ROOT / "infra.toml").read_text() + SEED_SECTION)
    (folder / "seeds" / "sql").mkdir(parents=True)
    (folder / "seeds" / "sql" / "10-schema.sql").write_text(
        "BEGIN;\nCREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);\nCOMMIT;\n"
    )
    (folder / "seeds" / "sql" / "20-rows.sql").write_text(
        "-- the fixtures; a ';' in a comment is not a statement\n"
        "INSERT INTO items VALUES (1, 'one'), (2, 'two; with a semicolon');\n"
    )
    (folder / "seeds" / "redis.json").write_text(
        '{"seedtest-service:greeting": "hello",\n'
        ' "seedtest-service:queue": ["a", "b"],\n'
        ' "seedtest-service:session": {"type": "hash", "value": {"user": "1"}, "ttl": 3600}}\n'
    )
    (folder / "seeds" / "files" / "seedtest" / "docs").mkdir(parents=True)
    (folder / "seeds" / "files" / "seedtest" / "docs" / "welcome.txt").write_bytes(b"welcome\n")
    provisioned = run_inv("provision", "--manifest", str(path), "--service", SERVICE)
    assert provisioned.returncode == 0, provisioned.stdout + provisioned.stderr
    yield path
    admin = PostgresConfig.from_stack(stack.settings)
    with psycopg.connect(**admin.connect_kwargs(autocommit=True)) as conn:
        conn.execute("DROP DATABASE IF EXISTS seedtest_db WITH (FORCE)")
        conn.execute("DROP ROLE IF EXISTS seedtest_user")
    service = _settings(stack)
    with RedisConfig.from_stack(stack.settings).client() as client:
        client.execute_command("ACL", "DELUSER", SERVICE)
    s3 = service.s3_config().client()
    for found in s3.list_objects(service.bucket, prefix="seedtest/", recursive=True):
        s3.remove_object(service.bucket, str(found.object_name))
    env_path(ROOT / "env" / stack.project_name, SERVICE).unlink(missing_ok=True)
    shutil.rmtree(path.parent, ignore_errors=True)


def _settings(stack: Stack, service: str = SERVICE) -> ServiceSettings:
    return ServiceSettings.load(env_path(ROOT / "env" / stack.project_name, service), environ={})


def _contents(stack: Stack, settings: ServiceSettings) -> dict[str, Any]:
    """Rows of every table, keys (type, value, TTL set or not) and objects of a service.

    Keys are listed as the admin: a service's ACL user may not SCAN.
    """
    tables: dict[str, list[tuple[Any, ...]]] = {}
    with settings.postgres(connect_timeout=5) as conn:
        for (name,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall():
            query = sql.SQL("SELECT * FROM {} ORDER BY 1").format(sql.Identifier(name))
            tables[name] = conn.execute(query).fetchall()
    keys: dict[str, Any] = {}
    admin = RedisConfig.from_stack(stack.settings)
    with admin.client(int(settings.require("REDIS_DB")), decode_responses=True) as client:
        for key in sorted(client.scan_iter(match=settings.redis_key_prefix + "*")):
            kind = client.type(key)
            if kind == "string":
                value: Any = client.get(key)
            elif kind == "list":
                value = client.lrange(key, 0, -1)
            else:
                value = client.hgetall(key)
            keys[key] = (kind, value, client.ttl(key) > 0)
    s3 = settings.s3_config().client()
    objects: dict[str, bytes] = {}
    for prefix in settings.prefixes:
        for found in s3.list_objects(settings.bucket, prefix=prefix, recursive=True):
            response = s3.get_object(settings.bucket, str(found.object_name))
            try:
                objects[str(found.object_name)] = response.read()
            finally:
                response.close()
                response.release_conn()
    return {"tables": tables, "keys": keys, "objects": objects}


def _mess_up(settings: ServiceSettings, tag: str) -> None:
    with settings.postgres(connect_timeout=5, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS scratch_{tag} (n int)")
        if conn.execute("SELECT to_regclass('items')").fetchone() != (None,):
            conn.execute("DELETE FROM items WHERE id = 1")
    with settings.redis() as client:
        client.set(settings.redis_key_prefix + f"scratch-{tag}", "x")
    settings.s3_config().client().put_object(
        settings.bucket, f"{settings.prefixes[0]}scratch-{tag}", _stream(b"x"), 1
    )


def _stream(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def test_seed_reset_seed_gives_the_same_contents_and_leaves_others_alone(
    stack: Stack, manifest: Path
) -> None:
    ours = _settings(stack)
    board = _settings(stack, "board-service")
    tag = uuid.uuid4().hex[:8]
    _mess_up(board, tag)
    try:
        others_before = _contents(stack, board)
        reset = run_inv("reset", "--service", SERVICE, "--yes", "--manifest", str(manifest))
        assert reset.returncode == 0, reset.stdout + reset.stderr
        seeded = _contents(stack, ours)
        assert seeded == {
            "tables": {"items": [(1, "one"), (2, "two; with a semicolon")]},
            "keys": {
                "seedtest-service:greeting": ("string", "hello", False),
                "seedtest-service:queue": ("list", ["a", "b"], False),
                "seedtest-service:session": ("hash", {"user": "1"}, True),
            },
            "objects": {"seedtest/docs/welcome.txt": b"welcome\n"},
        }

        _mess_up(ours, tag)
        assert _contents(stack, ours) != seeded
        # Data is there and no TTY: refused, nothing changed.
        refused = run_inv("reset", "--service", SERVICE, "--manifest", str(manifest))
        assert refused.returncode == 2
        assert "refusing to reset without --yes" in refused.stderr
        assert f"{SERVICE}: 2 table(s)" in refused.stderr
        assert f"scratch_{tag}" in _contents(stack, ours)["tables"]

        again = run_inv("reset", "--service", SERVICE, "--yes", "--manifest", str(manifest))
        assert again.returncode == 0, again.stdout + again.stderr
        assert _contents(stack, ours) == seeded
        # The service still logs in with the credentials it had.
        assert _settings(stack).values == ours.values
        assert _contents(stack, board) == others_before
    finally:
        with board.postgres(connect_timeout=5, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS scratch_{tag}")
        with board.redis() as client:
            client.delete(board.redis_key_prefix + f"scratch-{tag}")
        board.s3_config().client().remove_object(board.bucket, f"boards/scratch-{tag}")


def test_a_bad_sql_file_is_named_with_its_line_and_nothing_is_loaded(
    stack: Stack, manifest: Path
) -> None:
    emptied = run_inv(
        "reset", "--service", SERVICE, "--yes", "--no-seed", "--manifest", str(manifest)
    )
    assert emptied.returncode == 0, emptied.stdout + emptied.stderr
    bad = manifest.parent / "seeds" / "sql" / "30-bad.sql"
    bad.write_text("INSERT INTO items VALUES (3, 'three');\n\nINSERT INTO nowhere VALUES (1);\n")
    try:
        result = run_inv("seed", "--service", SERVICE, "--manifest", str(manifest))
    finally:
        bad.unlink()
    assert result.returncode == 1, result.stdout + result.stderr
    assert f'{bad}:3: relation "nowhere" does not exist' in result.stderr
    assert "nothing of seedtest-service's SQL seed was kept" in result.stderr
    # 10-schema.sql ran first in the same transaction: it is gone too.
    assert _contents(stack, _settings(stack))["tables"] == {}
    assert load_manifest(manifest).service(SERVICE).seed is not None
