"""`inv snapshot` against the real PostgreSQL of the stack, as board-service's own role."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from infra_lib.postgres.config import PostgresConfig
from infra_lib.postgres.snapshots import SNAPSHOT_PREFIX, Snapshots
from infra_lib.provisioning import read_service_env
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
    snapshots = Snapshots(PostgresConfig.from_stack(stack.settings))
    if snapshots.find(label):
        snapshots.remove(label)
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
