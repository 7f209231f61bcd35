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
    assert [o.change for o in first.objects] == ["created", "created"]
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


def _catalog(admin: PostgresProvisioner, tag: str) -> list[tuple[Any, ...]]:
    with admin.connect() as conn:
        return conn.execute(
            "SELECT 'r', rolname, xmin::text FROM pg_authid WHERE rolname LIKE %s "
            "UNION ALL SELECT 'd', datname, xmin::text FROM pg_database WHERE datname LIKE %s "
            "ORDER BY 1, 2",
            [f"t{tag}%", f"t{tag}%"],
        ).fetchall()


def test_a_role_not_created_for_the_service_is_refused(
    admin: PostgresProvisioner, names: Names
) -> None:
    role, db = names.service("a")
    with admin.connect() as conn:
        conn.execute(f"CREATE ROLE {role.name} LOGIN")
    before = _catalog(admin, names.tag)
    with pytest.raises(ProvisionError) as info:
        admin.plan([role], [db])
    message = str(info.value)
    assert f"service 'a-service', field 'postgres.role': role {role.name!r} already exists" in (
        message
    )
    assert "reset its password" in message and "COMMENT ON ROLE" in message
    assert _catalog(admin, names.tag) == before


def test_another_services_role_and_database_are_refused(
    admin: PostgresProvisioner, names: Names
) -> None:
    role, db = names.service("a")
    admin.ensure([role], [db])
    before = _catalog(admin, names.tag)
    thief_role = RoleSpec(role.name, "thief-pw", service="thief-service")
    thief_db = DatabaseSpec(db.name, role.name, service="thief-service")
    with pytest.raises(ProvisionError) as info:
        admin.ensure([thief_role], [thief_db])
    message = str(info.value)
    assert "service 'thief-service', field 'postgres.role'" in message
    assert "service 'thief-service', field 'postgres.database'" in message
    assert "belongs to service 'a-service'" in message
    assert _catalog(admin, names.tag) == before
    with _login(admin, role, db.name):
        pass


def test_the_admin_role_and_database_are_refused(
    admin: PostgresProvisioner, settings: StackSettings
) -> None:
    role = RoleSpec(settings.postgres_user, "x-pw", service="x")
    database = DatabaseSpec(settings.postgres_db, "x_user", service="x")
    with pytest.raises(ProvisionError) as info:
        admin.plan([role], [database])
    assert "field 'postgres.role'" in str(info.value)
    assert "admin role" in str(info.value)
    assert "field 'postgres.database'" in str(info.value)


def test_an_unmarked_database_of_the_services_own_role_is_adopted(
    admin: PostgresProvisioner, names: Names
) -> None:
    # What a run stopped between CREATE DATABASE and its COMMENT leaves.
    role, db = names.service("a")
    admin.ensure([role], [])
    with admin.connect() as conn:
        conn.execute(f"CREATE DATABASE {db.name} OWNER {role.name}")
    plan = admin.ensure([role], [db])
    assert f"mark database {db.name} as managed" in [s.description for s in plan.steps]
    assert not admin.plan([role], [db]).changed


def test_a_connection_limit_beyond_the_server_is_refused(
    admin: PostgresProvisioner, names: Names
) -> None:
    role, db = names.service("a")
    greedy = RoleSpec(role.name, role.password, service=role.service, connection_limit=100_000)
    with pytest.raises(ProvisionError, match=r"field 'postgres\.connection_limit'"):
        admin.plan([greedy], [db])


def test_hardening_keeps_service_roles_out_of_the_servers_databases(
    admin: PostgresProvisioner, names: Names
) -> None:
    role, db = names.service("a")
    admin.ensure([role], [db], harden=True)
    assert not admin.plan([role], [db], harden=True).changed
    for system_db in ("postgres", "template1"):
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            _login(admin, role, system_db)
    # The admin keeps its access, and databases are still copied from template1.
    with admin.connect("template1") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    maker = f"t{names.tag}_maker"
    copy = f"t{names.tag}_copy"
    names.databases.append(copy)
    names.roles.append(maker)
    with admin.connect() as conn:
        conn.execute(f"CREATE ROLE {maker} LOGIN CREATEDB PASSWORD 'maker-pw'")
        conn.execute(f"GRANT CONNECT ON DATABASE {db.name} TO {maker}")
    maker_login = admin.config.with_login(maker, "maker-pw", db.name)
    with psycopg.connect(**maker_login.connect_kwargs(autocommit=True)) as conn:
        conn.execute(f"CREATE DATABASE {copy} TEMPLATE template1")
    with admin.connect() as conn:
        conn.execute(f"ALTER DATABASE {copy} OWNER TO {admin.config.user}")


def test_an_admin_without_createrole_is_told_before_any_change(
    admin: PostgresProvisioner, names: Names
) -> None:
    weak = f"t{names.tag}_weak"
    names.roles.append(weak)
    with admin.connect() as conn:
        conn.execute(f"CREATE ROLE {weak} LOGIN PASSWORD 'weak-pw'")
        # An explicit grant is how a monitoring role keeps reaching `postgres`.
        conn.execute(f"GRANT CONNECT ON DATABASE {admin.config.dbname} TO {weak}")
    role, db = names.service("a")
    before = _catalog(admin, names.tag)
    weak_admin = PostgresProvisioner(admin.config.with_login(weak, "weak-pw"))
    try:
        with pytest.raises(ProvisionError) as info:
            weak_admin.ensure([role], [db])
        assert "lacks CREATEROLE" in str(info.value) and "lacks CREATEDB" in str(info.value)
        assert "service 'a-service'" in str(info.value)
        assert _catalog(admin, names.tag) == before
    finally:
        with admin.connect() as conn:
            conn.execute(f"REVOKE CONNECT ON DATABASE {admin.config.dbname} FROM {weak}")


def test_the_provisioning_lock_makes_a_second_holder_wait(admin: PostgresProvisioner) -> None:
    second = PostgresProvisioner(admin.config)
    with (
        admin.lock(),
        pytest.raises(ProvisionError, match="another provisioning run"),
        second.lock(timeout=0.5),
    ):
        pass
    with PostgresProvisioner(admin.config).lock(timeout=0.5):
        pass
