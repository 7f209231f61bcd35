"""The tasks against a PostgreSQL that behaves like RDS: TLS only, an admin that is no superuser.

Everything runs through ``inv`` with an env file that describes the server
(``POSTGRES_HOST``, ``POSTGRES_SSLMODE=verify-full``, ``POSTGRES_SSLROOTCERT``),
as a team would point the tool at its managed database.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import psycopg
import pytest

from .conftest import run_inv
from .managed import ADMIN, ManagedTarget, RdsLikePostgres

MANIFEST = """\
[project]
name = "ledger"

[services.ledger-service]
postgres = { database = "ledger_db", role = "ledger_user" }

[services.audit-service]
postgres = { database = "audit_db", role = "audit_user" }
"""

ONLY_POSTGRES = ["--skip", "redis", "--skip", "storage", "--skip", "livekit", "--skip", "coturn"]


Target = ManagedTarget[RdsLikePostgres]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    found = ManagedTarget.write(
        tmp_path_factory.mktemp("rds-like"),
        f"rds-like-{os.getpid()}",
        RdsLikePostgres.start(),
        MANIFEST,
    )
    try:
        code, _, err = found.inv("provision")
        assert code == 0, err
        yield found
    finally:
        found.remove()


def test_the_server_is_like_rds(target: Target) -> None:
    with target.server.connect() as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert row == (False, True, True)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT rolpassword FROM pg_authid")
    with pytest.raises(psycopg.OperationalError, match="reject"):
        target.server.connect(sslmode="disable").close()
    # verify-full means the test's CA, not any CA.
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        target.server.connect(sslrootcert="system").close()


def test_provisioning_works_without_superuser_and_is_idempotent(target: Target) -> None:
    code, out, err = target.inv("provision")
    assert code == 0, err
    assert "created 0, changed 0" in out
    ledger = target.service("ledger-service")
    assert ledger["PGSSLMODE"] == "verify-full"
    assert ledger["PGSSLROOTCERT"] == str(target.server.ca_file)
    assert f"sslrootcert={target.server.ca_file}" in ledger["JDBC_DATABASE_URL"]
    assert not any(key.startswith(("REDIS_", "S3_", "LIVEKIT_")) for key in ledger)
    with psycopg.connect(ledger["DATABASE_URL"]) as conn:
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        assert owner == ("ledger_user",)
        assert conn.info.pgconn.ssl_in_use


def test_smoke_passes_on_the_managed_server(target: Target) -> None:
    code, out, err = target.inv("smoke", *ONLY_POSTGRES, "--junit", str(target.backups / "j.xml"))
    assert code == 0, out + err
    assert "smoke: 2 passed, 0 failed" in out


def test_backup_restore_and_drill_without_superuser(target: Target) -> None:
    ledger = target.service("ledger-service")
    with psycopg.connect(ledger["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS entries (id int PRIMARY KEY, amount numeric)")
        conn.execute("TRUNCATE entries")
        conn.execute("INSERT INTO entries SELECT g, g * 1.5 FROM generate_series(1, 500) g")

    code, out, err = target.inv("backup", "--target", "postgres", "--to", str(target.backups))
    assert code == 0, err
    assert "may not read password verifiers" in err
    # The host's pg_dump, if any, is older than the server: the image's own did the dump.
    (manifest,) = target.backups.glob("*-postgres/manifest.json")
    server = json.loads(manifest.read_text())["server"]
    assert (
        server["pg_dump"].split("(PostgreSQL) ")[1].split(".")[0] == server["version"].split(".")[0]
    )

    where = ["--target", "postgres", "--service", "ledger-service", "--dir", str(target.backups)]
    code, out, err = target.inv("restore", *where)
    assert code == 3, err
    assert "not restoring over existing data" in err

    code, out, err = target.inv("restore", *where, "--into", "ledger_copy")
    assert code == 0, err
    with psycopg.connect(ledger["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("DELETE FROM entries WHERE id > 100")
    code, out, err = target.inv("restore", *where, "--force")
    assert code == 0, err

    # The service logs in as before, owns its database again, and has every row back.
    with psycopg.connect(ledger["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM entries").fetchone() == (500,)
        conn.execute("INSERT INTO entries VALUES (501, 1)")
    backups = str(target.backups)
    code, out, err = target.inv("backup", "--target", "postgres", "--verify-only", "--to", backups)
    assert code == 0, err
    assert "passed" in out


def test_a_missing_privilege_is_named(target: Target) -> None:
    target.server.sql(f"ALTER ROLE {ADMIN} NOCREATEDB")
    extra = target.manifest.with_name("more.toml")
    extra.write_text(
        MANIFEST + '\n[services.report-service]\npostgres = { database = "report_db", '
        'role = "report_user" }\n'
    )
    try:
        result = run_inv("provision", "--manifest", str(extra), env_file=target.env_file)
    finally:
        target.server.sql(f"ALTER ROLE {ADMIN} CREATEDB")
    assert result.returncode != 0
    assert f"the admin role '{ADMIN}' (POSTGRES_USER) lacks CREATEDB" in result.stderr
    assert "create database report_db" in result.stderr
    # Checked before any change: not even the role was made.
    assert target.server.sql("SELECT count(*) FROM pg_roles WHERE rolname = 'report_user'") == (
        "0\n"
    )


def test_rotate_on_the_managed_server(target: Target) -> None:
    old = target.service("audit-service")
    code, _, err = target.inv("rotate", "audit-service")
    assert code == 0, err
    new = target.service("audit-service")
    assert new["PGPASSWORD"] != old["PGPASSWORD"]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(old["DATABASE_URL"]).close()
    with psycopg.connect(new["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("audit_user",)
