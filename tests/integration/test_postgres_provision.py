"""PostgreSQL provisioning against the real server: least privilege, idempotency."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra_lib.errors import ConfigError, ProvisionError, ServiceUnavailable
from infra_lib.postgres.config import PostgresConfig
from infra_lib.postgres.provisioner import DatabaseSpec, PostgresProvisioner, RoleSpec
from infra_lib.stack.settings import StackSettings

from .conftest import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def admin(settings: StackSettings) -> PostgresProvisioner:
    return PostgresProvisioner(PostgresConfig.from_stack(settings))


class Names:
    """Unique role/database names for one test, dropped afterwards."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.roles: list[str] = []
        self.databases: list[str] = []

    def service(self, label: str, password: str = "pw") -> tuple[RoleSpec, DatabaseSpec]:
        role = f"t{self.tag}_{label}_user"
        db = f"t{self.tag}_{label}_db"
        self.roles.append(role)
        self.databases.append(db)
        return (
            RoleSpec(role, f"{password}-{self.tag}", service=f"{label}-service"),
            DatabaseSpec(db, role, service=f"{label}-service"),
        )


@pytest.fixture
def names(admin: PostgresProvisioner) -> Iterator[Names]:
    made = Names()
    yield made
    for db in made.databases:
        admin.drop_database(db, force=True)
    for role in made.roles:
        admin.drop_role(role)


def _login(admin: PostgresProvisioner, role: RoleSpec, db: str) -> psycopg.Connection[Any]:
    config = admin.config.with_login(role.name, role.password, db)
    return psycopg.connect(**config.connect_kwargs(autocommit=True))


def _xmins(admin: PostgresProvisioner, roles: list[str], dbs: list[str]) -> list[tuple[Any, ...]]:
    # xmin changes whenever a row is rewritten: ALTER ROLE/DATABASE, COMMENT, GRANT.
    with admin.connect() as conn:
        return conn.execute(
            "SELECT 'r', rolname, xmin::text FROM pg_authid WHERE rolname = ANY(%s) "
            "UNION ALL SELECT 'd', datname, xmin::text FROM pg_database WHERE datname = ANY(%s) "
            "UNION ALL SELECT 'c', d.description, d.xmin::text FROM pg_shdescription d "
            "JOIN pg_database db ON db.oid = d.objoid WHERE db.datname = ANY(%s) ORDER BY 1, 2",
            [roles, dbs, dbs],
        ).fetchall()


def test_second_run_reports_nothing_and_issues_no_ddl(
    admin: PostgresProvisioner, names: Names
) -> None:
    role, db = names.service("a")
    first = admin.ensure([role], [db])
    assert [o.change for o in first.objects] == ["create", "create"]
    before = _xmins(admin, [role.name], [db.name])

    second = admin.ensure([role], [db])
    assert not second.changed
    assert second.steps == ()
    assert _xmins(admin, [role.name], [db.name]) == before


def test_role_owns_its_database_and_nothing_else(admin: PostgresProvisioner, names: Names) -> None:
    role_a, db_a = names.service("a")
    role_b, db_b = names.service("b")
    admin.ensure([role_a, role_b], [db_a, db_b])

    with _login(admin, role_a, db_a.name) as conn:
        conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text)")
        conn.execute("INSERT INTO notes (body) VALUES ('mine')")
        assert conn.execute("SELECT count(*) FROM notes").fetchone() == (1,)
        attributes = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls "
            "FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert attributes == (False, False, False, False, False)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"CREATE DATABASE t{names.tag}_sneaky")

    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        _login(admin, role_a, db_b.name)
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        _login(admin, role_b, db_a.name)


def test_password_change_is_detected_and_applied(admin: PostgresProvisioner, names: Names) -> None:
    role, db = names.service("a")
    admin.ensure([role], [db])
    new_role = RoleSpec(role.name, "a-new-password", service=role.service)

    plan = admin.plan([new_role], [db])
    assert [s.description for s in plan.steps] == [f"set a new password on role {role.name}"]
    assert "a-new-password" not in repr(plan)
    admin.apply(plan)
    with _login(admin, new_role, db.name) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _login(admin, role, db.name)


def test_dry_run_changes_nothing(admin: PostgresProvisioner, names: Names) -> None:
    role, db = names.service("a")
    plan = admin.ensure([role], [db], dry_run=True)
    assert plan.changed and not plan.applied
    with admin.connect() as conn:
        assert (
            conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role.name]).fetchall() == []
        )


def test_attribute_drift_is_repaired(admin: PostgresProvisioner, names: Names) -> None:
    role, db = names.service("a")
    admin.ensure([role], [db])
    with admin.connect() as conn:
        conn.execute(f"ALTER ROLE {role.name} CREATEDB CONNECTION LIMIT 3")
        conn.execute(f"GRANT CONNECT ON DATABASE {db.name} TO PUBLIC")
    plan = admin.ensure([role], [db])
    descriptions = [s.description for s in plan.steps]
    assert f"set NOCREATEDB on role {role.name}" in descriptions
    assert f"revoke CONNECT and TEMPORARY on {db.name} from PUBLIC" in descriptions
    assert not admin.plan([role], [db]).changed


def test_reserved_words_are_quoted_not_executed(admin: PostgresProvisioner, names: Names) -> None:
    names.roles.append("select")
    names.databases.append("table")
    role = RoleSpec("select", "pw-reserved")
    admin.ensure([role], [DatabaseSpec("table", "select")])
    with _login(admin, role, "table") as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (
            "select",
            "table",
        )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.text(min_size=1, max_size=70))
def test_hostile_names_are_rejected_before_reaching_the_server(
    admin: PostgresProvisioner, name: str
) -> None:
    try:
        spec = RoleSpec(name, "pw")
    except ConfigError:
        return
    # Whatever passed validation is a plain identifier; planning it is harmless.
    assert name.isascii() and len(name.encode()) <= 63
    assert admin.plan([spec], []).objects[0].name == name


@pytest.mark.parametrize(
    "name", ['x"; DROP DATABASE postgres; --', "a'b", "é", "semi;colon", "a" * 64, "Upper"]
)
def test_known_hostile_names(name: str) -> None:
    with pytest.raises(ConfigError):
        RoleSpec(name, "pw")
    with pytest.raises(ConfigError):
        DatabaseSpec(name, "owner")


def test_drop_refuses_without_force_and_terminates_connections(
    admin: PostgresProvisioner, names: Names
) -> None:
    role, db = names.service("a")
    admin.ensure([role], [db])
    with pytest.raises(ProvisionError, match="force"):
        admin.drop_database(db.name)
    lingering = _login(admin, role, db.name)
    try:
        assert admin.drop_database(db.name, force=True)
    finally:
        lingering.close()
    assert not admin.drop_database(db.name, force=True)


def test_rotate_password(admin: PostgresProvisioner, names: Names) -> None:
    role, db = names.service("a")
    admin.ensure([role], [db])
    admin.rotate_password(role.name, "rotated-pw")
    with _login(admin, RoleSpec(role.name, "rotated-pw"), db.name):
        pass
    with pytest.raises(ProvisionError, match="does not exist"):
        admin.rotate_password(f"t{names.tag}_ghost", "x")


def test_list_managed_shows_what_was_provisioned(admin: PostgresProvisioner, names: Names) -> None:
    role, db = names.service("a")
    admin.ensure([role], [db])
    managed = {(m.kind, m.name, m.service) for m in admin.list_managed()}
    assert ("role", role.name, "a-service") in managed
    assert ("database", db.name, "a-service") in managed


def test_wrong_admin_password_is_a_clear_error(settings: StackSettings) -> None:
    config = PostgresConfig.from_stack(settings).with_login(settings.postgres_user, "wrong-pw-42")
    with pytest.raises(ServiceUnavailable) as info:
        PostgresProvisioner(config).plan([], [])
    assert "POSTGRES_PASSWORD" in str(info.value)
    assert "wrong-pw-42" not in str(info.value)


def test_server_down_is_a_clear_error() -> None:
    config = PostgresConfig(host="127.0.0.1", port=free_port(), password="x", connect_timeout=2)
    with pytest.raises(ServiceUnavailable, match="inv status"):
        PostgresProvisioner(config).plan([], [])
