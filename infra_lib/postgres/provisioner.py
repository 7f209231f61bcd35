"""Create PostgreSQL roles and databases, least privilege, idempotently.

The provisioner reads the catalog in a handful of queries, diffs it against
the wanted :class:`RoleSpec` and :class:`DatabaseSpec` objects, and produces a
:class:`PostgresPlan` of statements. Applying an empty plan issues no
statement at all, which is what makes a second run cheap and honest.

Least privilege, per service:

* the role can log in and nothing more (no superuser, createdb, createrole,
  replication or bypassrls);
* it owns its database, so on PostgreSQL 15+ it may create objects in the
  ``public`` schema (owned by ``pg_database_owner``) while nobody else may;
* ``CONNECT`` and ``TEMPORARY`` on the database are revoked from ``PUBLIC``,
  so no other service's role can connect to it.

Identifiers are validated first and always composed with
:class:`psycopg.sql.Identifier`. Passwords are turned into SCRAM verifiers on
the client (libpq's ``PQencryptPasswordConn``), so the plain password is
never sent in SQL, logged, or put in an error message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from infra_lib.changes import Change
from infra_lib.errors import ConfigError, ProvisionError
from infra_lib.names import validate_pg_identifier
from infra_lib.postgres.catalog import admin_connection, read_roles
from infra_lib.postgres.config import PostgresConfig
from infra_lib.postgres.scram import scram_matches

__all__ = [
    "DatabaseSpec",
    "ManagedObject",
    "ObjectPlan",
    "PostgresPlan",
    "PostgresProvisioner",
    "RoleSpec",
    "Step",
]

logger = logging.getLogger(__name__)


#: Marks roles and databases this library manages (read back by ``list_managed``).
COMMENT_PREFIX = "infra-lib service: "

# The advisory lock key every provisioning run takes ("infra-lib" in ASCII).
_LOCK_KEY = 0x696E6672612D6C69


@dataclass(frozen=True, slots=True)
class RoleSpec:
    """A login role a service connects as."""

    name: str
    password: str = field(repr=False)
    service: str = ""
    connection_limit: int = -1
    valid_until: datetime | None = None

    def __post_init__(self) -> None:
        validate_pg_identifier(self.name, what="role name")
        if not self.password:
            raise ConfigError(f"role {self.name!r} needs a non-empty password")


@dataclass(frozen=True, slots=True)
class DatabaseSpec:
    """A database owned by one service role."""

    name: str
    owner: str
    service: str = ""
    encoding: str = "UTF8"
    locale: str = "C"
    template: str = "template0"
    connection_limit: int = -1

    def __post_init__(self) -> None:
        validate_pg_identifier(self.name, what="database name")
        validate_pg_identifier(self.owner, what="database owner")
        validate_pg_identifier(self.template, what="template")


@dataclass(frozen=True, slots=True)
class Step:
    """One statement of a plan, with a description that holds no secret."""

    description: str
    statement: sql.Composed = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class ObjectPlan:
    """What happens to one role or database."""

    kind: Literal["role", "database"]
    name: str
    change: Change
    steps: tuple[Step, ...] = ()
    service: str = ""

    @property
    def summary(self) -> str:
        """The steps' descriptions joined, or "unchanged"."""
        return "; ".join(s.description for s in self.steps) or "unchanged"


@dataclass(frozen=True, slots=True)
class PostgresPlan:
    """The diff between the wanted objects and the server's catalog."""

    objects: tuple[ObjectPlan, ...]
    applied: bool = False

    @property
    def steps(self) -> tuple[Step, ...]:
        """Every statement, in the order they must run."""
        return tuple(step for obj in self.objects for step in obj.steps)

    @property
    def changed(self) -> bool:
        """Whether applying the plan would change anything."""
        return any(obj.change != "unchanged" for obj in self.objects)


@dataclass(frozen=True, slots=True, order=True)
class ManagedObject:
    """A role or database carrying this library's comment."""

    kind: Literal["role", "database"]
    name: str
    service: str


_ROLE_ATTRIBUTES = {
    # catalog column -> (wanted value, keyword when wrong)
    "rolcanlogin": (True, "LOGIN"),
    "rolsuper": (False, "NOSUPERUSER"),
    "rolcreatedb": (False, "NOCREATEDB"),
    "rolcreaterole": (False, "NOCREATEROLE"),
    "rolreplication": (False, "NOREPLICATION"),
    "rolbypassrls": (False, "NOBYPASSRLS"),
}


class PostgresProvisioner:
    """Plans and applies roles and databases on one server.

    ``config`` is an admin connection: a superuser on the compose stack, or a
    role with CREATEROLE and CREATEDB on a managed server (where the stored
    password verifiers are unreadable, passwords are then checked by logging
    in as the role).
    """

    def __init__(self, config: PostgresConfig) -> None:
        self.config = config

    # -- connections -------------------------------------------------------

    @contextmanager
    def connect(self, dbname: str | None = None) -> Iterator[psycopg.Connection[Any]]:
        """An autocommit admin connection; ServiceUnavailable when it fails."""
        with admin_connection(
            self.config,
            dbname,
            hint=". Check the admin password (POSTGRES_PASSWORD) and that the server runs "
            "(`inv status`).",
        ) as conn:
            yield conn

    @contextmanager
    def lock(self, *, timeout: float = 300.0) -> Iterator[None]:
        """Hold the server-wide provisioning lock; wait up to ``timeout`` seconds for it.

        A session advisory lock, so two provisioning runs against one server
        (two checkouts, two CI jobs) take turns even from different machines,
        and the server frees it when the holder's connection drops.
        """
        deadline = time.monotonic() + timeout
        with self.connect() as conn:
            while not _scalar(conn, "SELECT pg_try_advisory_lock(%s)", _LOCK_KEY):
                if time.monotonic() >= deadline:
                    raise ProvisionError(
                        f"another provisioning run has held the lock on PostgreSQL at "
                        f"{self.config.host}:{self.config.port} for over {timeout:.0f} s; "
                        "nothing was changed. Wait for it to finish (or find it in "
                        "pg_locks, locktype 'advisory') and run `inv provision` again."
                    )
                time.sleep(0.2)
            logger.debug("postgres: holding the provisioning lock")
            try:
                yield
            finally:
                # A dropped connection has released the lock already.
                if not conn.closed:
                    conn.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_KEY])

    # -- planning ----------------------------------------------------------

    def plan(
        self,
        roles: Sequence[RoleSpec],
        databases: Sequence[DatabaseSpec],
        *,
        harden: bool = False,
    ) -> PostgresPlan:
        """Diff ``roles`` and ``databases`` against the catalog; change nothing.

        Refuses (:class:`ProvisionError`, every problem listed) to plan for
        the admin role or database of :attr:`config`, for a role or database
        that exists but was not created by this library for the same service,
        when the admin role lacks the privileges the plan needs, and for a
        connection limit the server cannot grant. With ``harden`` the plan
        also revokes ``CONNECT`` from ``PUBLIC`` on the server's own
        databases (``postgres``, ``template1`` and the admin database).
        """
        _unique("role", [r.name for r in roles])
        _unique("database", [d.name for d in databases])
        with self.connect() as conn:
            admin = _read_admin(conn)
            role_rows, verifiers_readable = _read_roles(conn, [r.name for r in roles])
            db_rows = _read_databases(conn, [d.name for d in databases])
            problems = self._ownership_problems(roles, databases, role_rows, db_rows)
            problems += _limit_problems(admin, roles)
            if problems:
                raise ProvisionError(_problems("PostgreSQL", problems))
            objects: list[ObjectPlan] = []
            own_db = {d.owner: d.name for d in databases}
            for role in roles:
                row = role_rows.get(role.name)
                objects.append(
                    self._plan_role(conn, role, row, verifiers_readable, own_db.get(role.name))
                )
            acts_as = _admin_acts_as(conn, admin, [d.owner for d in databases])
            for database in databases:
                objects.append(
                    self._plan_database(
                        database, db_rows.get(database.name), database.owner in acts_as
                    )
                )
            if harden:
                objects += self._plan_hardening(conn, admin)
        plan = PostgresPlan(tuple(objects))
        problems = _privilege_problems(self.config.user, admin, plan)
        if problems:
            raise ProvisionError(_problems("PostgreSQL", problems))
        return plan

    def _ownership_problems(
        self,
        roles: Sequence[RoleSpec],
        databases: Sequence[DatabaseSpec],
        role_rows: dict[str, dict[str, Any]],
        db_rows: dict[str, dict[str, Any]],
    ) -> list[str]:
        # Provisioning resets a role's password and takes over a database's
        # ownership, so it may touch only what it created for the same service.
        problems: list[str] = []
        for role in roles:
            where = _where(role.service, "postgres.role")
            if role.name == self.config.user:
                problems.append(
                    f"{where}role {role.name!r} is the admin role these settings connect as "
                    "(POSTGRES_USER); give the service a role of its own"
                )
                continue
            row = role_rows.get(role.name)
            if row is not None and row["comment"] != COMMENT_PREFIX + role.service:
                problems.append(
                    f"{where}role {role.name!r} already exists and {_holder(row['comment'])}; "
                    "provisioning would reset its password. Pick another role name, or, if "
                    "the role really is this service's, run `COMMENT ON ROLE "
                    f"{role.name} IS '{COMMENT_PREFIX}{role.service}'` and provision again"
                )
        owners = {r.name: r.service for r in roles}
        for db in databases:
            where = _where(db.service, "postgres.database")
            if db.name == self.config.dbname:
                problems.append(
                    f"{where}database {db.name!r} is the admin database these settings "
                    "connect to (POSTGRES_DB); give the service a database of its own"
                )
                continue
            row = db_rows.get(db.name)
            if row is None or row["comment"] == COMMENT_PREFIX + db.service:
                continue
            # A run stopped between CREATE DATABASE and its COMMENT leaves the
            # database unmarked but owned by the service's own managed role
            # (which cannot create databases itself), so that one is ours.
            owner_row = role_rows.get(row["owner"])
            if (
                row["comment"] is None
                and owners.get(row["owner"]) == db.service
                and owner_row is not None
                and owner_row["comment"] == COMMENT_PREFIX + db.service
            ):
                continue
            problems.append(
                f"{where}database {db.name!r} already exists (owner {row['owner']}) and "
                f"{_holder(row['comment'])}; provisioning would hand it to {db.owner}. Pick "
                "another database name, or, if it really is this service's, run `COMMENT ON "
                f"DATABASE {db.name} IS '{COMMENT_PREFIX}{db.service}'` and provision again"
            )
        return problems

    def _plan_hardening(
        self, conn: psycopg.Connection[Any], admin: dict[str, Any]
    ) -> list[ObjectPlan]:
        # Every role may connect to a database whose CONNECT is granted to
        # PUBLIC, as the server's own databases are at initdb. CREATE DATABASE
        # copies template1 without connecting to it, and superusers and owners
        # keep their access, so revoking it costs the admin nothing.
        names = list(dict.fromkeys(["postgres", "template1", self.config.dbname]))
        rows = conn.execute(
            """
            SELECT datname, pg_has_role(datdba, 'USAGE') AS owned
            FROM pg_database
            WHERE datname = ANY(%s) AND has_database_privilege('public', oid, 'CONNECT')
            ORDER BY datname
            """,
            [names],
        ).fetchall()
        objects: list[ObjectPlan] = []
        for name, owned in rows:
            if not (admin["rolsuper"] or owned):
                logger.warning(
                    "postgres: leaving CONNECT on %s to PUBLIC: %s is neither superuser nor "
                    "its owner",
                    name,
                    self.config.user,
                )
                continue
            step = Step(
                f"revoke CONNECT on {name} from PUBLIC",
                sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)),
            )
            objects.append(ObjectPlan("database", name, Change.CHANGED, (step,)))
        return objects

    def apply(
        self, plan: PostgresPlan, *, on_applied: Callable[[ObjectPlan], None] | None = None
    ) -> PostgresPlan:
        """Run the statements of ``plan`` in order; no statement when unchanged.

        ``on_applied`` is called after each object's statements succeeded, so
        a caller can say what exists when a later statement fails.
        """
        if not plan.changed:
            return PostgresPlan(plan.objects, applied=True)
        with self.connect() as conn:
            for obj in plan.objects:
                # A role's steps (CREATE ROLE and its COMMENT) commit together, so
                # a stopped run never leaves a role that looks unmanaged.
                # CREATE DATABASE cannot run inside a transaction block.
                block = conn.transaction() if obj.kind == "role" else nullcontext()
                step = None
                try:
                    with block:
                        for step in obj.steps:
                            logger.info("postgres: %s", step.description)
                            conn.execute(step.statement)
                except psycopg.Error as exc:
                    what = step.description if step is not None else f"change {obj.name}"
                    raise ProvisionError(
                        f"PostgreSQL refused to {what}: {exc.diag.message_primary or exc}"
                    ) from exc
                if on_applied is not None and obj.steps:
                    on_applied(obj)
        return PostgresPlan(plan.objects, applied=True)

    def ensure(
        self,
        roles: Sequence[RoleSpec],
        databases: Sequence[DatabaseSpec],
        *,
        dry_run: bool = False,
        harden: bool = False,
    ) -> PostgresPlan:
        """Plan, and apply unless ``dry_run``."""
        plan = self.plan(roles, databases, harden=harden)
        return plan if dry_run else self.apply(plan)

    def _plan_role(
        self,
        conn: psycopg.Connection[Any],
        role: RoleSpec,
        row: dict[str, Any] | None,
        verifiers_readable: bool,
        dbname: str | None = None,
    ) -> ObjectPlan:
        ident = sql.Identifier(role.name)
        valid_until = sql.Literal(role.valid_until.isoformat() if role.valid_until else "infinity")
        if row is None:
            comment = sql.SQL("COMMENT ON ROLE {} IS {}").format(
                ident, sql.Literal(COMMENT_PREFIX + role.service)
            )
            create = sql.SQL(
                "CREATE ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                "NOBYPASSRLS INHERIT CONNECTION LIMIT {} PASSWORD {} VALID UNTIL {}"
            ).format(
                ident,
                sql.Literal(role.connection_limit),
                sql.Literal(_encrypt(conn, role)),
                valid_until,
            )
            limit = (
                "" if role.connection_limit < 0 else f", connection limit {role.connection_limit}"
            )
            return ObjectPlan(
                "role",
                role.name,
                Change.CREATED,
                (
                    Step(f"create role {role.name} (login only{limit})", create),
                    Step(f"mark role {role.name} as managed", comment),
                ),
                role.service,
            )

        steps: list[Step] = []
        wrong = [kw for col, (want, kw) in _ROLE_ATTRIBUTES.items() if row[col] != want]
        if wrong:
            steps.append(
                Step(
                    f"set {' '.join(wrong)} on role {role.name}",
                    sql.SQL("ALTER ROLE {} WITH {}").format(ident, sql.SQL(" ".join(wrong))),
                )
            )
        if row["rolconnlimit"] != role.connection_limit:
            steps.append(
                Step(
                    f"set connection limit {role.connection_limit} on role {role.name} "
                    f"(was {row['rolconnlimit']})",
                    sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(
                        ident, sql.Literal(role.connection_limit)
                    ),
                )
            )
        if _normalise_time(row["rolvaliduntil"]) != _normalise_time(role.valid_until):
            steps.append(
                Step(
                    f"set valid until {role.valid_until or 'infinity'} on role {role.name}",
                    sql.SQL("ALTER ROLE {} VALID UNTIL {}").format(ident, valid_until),
                )
            )
        if verifiers_readable:
            same_password = scram_matches(row["rolpassword"], role.password)
        else:
            same_password = self._can_login(role, dbname)
        if not same_password:
            steps.append(
                Step(
                    f"set a new password on role {role.name}",
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        ident, sql.Literal(_encrypt(conn, role))
                    ),
                )
            )
        return ObjectPlan(
            "role",
            role.name,
            Change.CHANGED if steps else Change.UNCHANGED,
            tuple(steps),
            role.service,
        )

    def _plan_database(
        self, db: DatabaseSpec, row: dict[str, Any] | None, acts_as_owner: bool = True
    ) -> ObjectPlan:
        ident = sql.Identifier(db.name)
        owner = sql.Identifier(db.owner)
        # Only a superuser may give a database to a role it is not a member of.
        # On a managed server the admin joins the service's role first, as the
        # providers document for their master user.
        join = (
            ()
            if acts_as_owner
            else (
                Step(
                    f"let {self.config.user} act as {db.owner} (a non-superuser admin must, "
                    "to give it a database)",
                    sql.SQL("GRANT {} TO CURRENT_USER").format(owner),
                ),
            )
        )
        comment = sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            ident, sql.Literal(COMMENT_PREFIX + db.service)
        )
        revoke = Step(
            f"revoke CONNECT and TEMPORARY on {db.name} from PUBLIC",
            sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident),
        )
        if row is None:
            create = sql.SQL(
                "CREATE DATABASE {} WITH OWNER {} TEMPLATE {} ENCODING {} LOCALE {} "
                "CONNECTION LIMIT {}"
            ).format(
                ident,
                owner,
                sql.Identifier(db.template),
                sql.Literal(db.encoding),
                sql.Literal(db.locale),
                sql.Literal(db.connection_limit),
            )
            return ObjectPlan(
                "database",
                db.name,
                Change.CREATED,
                (
                    *join,
                    Step(
                        f"create database {db.name} owned by {db.owner} "
                        f"({db.encoding}, locale {db.locale})",
                        create,
                    ),
                    revoke,
                    Step(f"mark database {db.name} as managed", comment),
                ),
                db.service,
            )

        if row["encoding"].upper() != db.encoding.upper():
            raise ProvisionError(
                f"database {db.name} exists with encoding {row['encoding']}, the manifest asks "
                f"for {db.encoding}; PostgreSQL cannot change a database's encoding. Dump and "
                "recreate it, or change the manifest to match."
            )
        steps: list[Step] = []
        if row["owner"] != db.owner:
            steps += join
            steps.append(
                Step(
                    f"give database {db.name} to {db.owner} (was {row['owner']})",
                    sql.SQL("ALTER DATABASE {} OWNER TO {}").format(ident, owner),
                )
            )
        if row["connlimit"] != db.connection_limit:
            steps.append(
                Step(
                    f"set connection limit {db.connection_limit} on database {db.name}",
                    sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(
                        ident, sql.Literal(db.connection_limit)
                    ),
                )
            )
        if row["public_connect"] or row["public_temp"]:
            steps.append(revoke)
        if row["comment"] != COMMENT_PREFIX + db.service:
            steps.append(Step(f"mark database {db.name} as managed", comment))
        return ObjectPlan(
            "database",
            db.name,
            Change.CHANGED if steps else Change.UNCHANGED,
            tuple(steps),
            db.service,
        )

    def _can_login(self, role: RoleSpec, dbname: str | None) -> bool:
        # The role's own database: the server's databases refuse it CONNECT.
        try:
            with psycopg.connect(
                **self.config.with_login(role.name, role.password, dbname).connect_kwargs()
            ):
                return True
        except psycopg.OperationalError:
            return False

    # -- single operations -------------------------------------------------

    def rotate_password(self, role: str, new_password: str) -> None:
        """Give ``role`` a new password (sent as a SCRAM verifier)."""
        validate_pg_identifier(role, what="role name")
        spec = RoleSpec(role, new_password)
        with self.connect() as conn:
            if not _read_roles(conn, [role])[0]:
                raise ProvisionError(f"role {role} does not exist; provision it first")
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(_encrypt(conn, spec))
                )
            )
        logger.info("postgres: rotated the password of role %s", role)

    def grant_connect(self, role: str, database: str) -> None:
        """Let ``role`` connect to ``database`` (e.g. a read-only reporting role)."""
        validate_pg_identifier(role, what="role name")
        validate_pg_identifier(database, what="database name")
        with self.connect() as conn:
            conn.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    sql.Identifier(database), sql.Identifier(role)
                )
            )

    def drop_database(self, name: str, *, force: bool = False) -> bool:
        """Drop ``name``, terminating its connections first. Needs ``force=True``.

        Returns False when the database did not exist.
        """
        validate_pg_identifier(name, what="database name")
        if not force:
            raise ProvisionError(
                f"refusing to drop database {name} without force: its data would be lost. "
                "Back it up first, then pass force=True (or --force)."
            )
        with self.connect() as conn:
            if not _read_databases(conn, [name]):
                return False
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        logger.info("postgres: dropped database %s", name)
        return True

    def drop_role(self, name: str) -> bool:
        """Drop a role that owns nothing any more; False when it did not exist."""
        validate_pg_identifier(name, what="role name")
        with self.connect() as conn:
            if not _read_roles(conn, [name])[0]:
                return False
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
        return True

    def list_managed(self) -> list[ManagedObject]:
        """Roles and databases that carry this library's comment."""
        query = """
            SELECT 'role', rolname, shobj_description(oid, 'pg_authid') FROM pg_roles
            UNION ALL
            SELECT 'database', datname, shobj_description(oid, 'pg_database') FROM pg_database
        """
        with self.connect() as conn:
            rows = conn.execute(query).fetchall()
        return sorted(
            ManagedObject(kind, name, comment.removeprefix(COMMENT_PREFIX))
            for kind, name, comment in rows
            if comment and comment.startswith(COMMENT_PREFIX)
        )


def _scalar(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, list(params)).fetchone()
    return None if row is None else row[0]


def _where(service: str, field: str) -> str:
    return f"service {service!r}, field {field!r}: " if service else ""


def _holder(comment: str | None) -> str:
    if comment and comment.startswith(COMMENT_PREFIX):
        return f"belongs to service {comment.removeprefix(COMMENT_PREFIX)!r}"
    return "was not created by infra-lib for this service"


def _problems(server: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{problems[0]}. Nothing was changed on {server}."
    return f"nothing was changed on {server}, because:\n  " + "\n  ".join(problems)


def _read_admin(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    row = (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
            SELECT rolsuper, rolcreaterole, rolcreatedb,
                   current_setting('max_connections')::int
                   - current_setting('superuser_reserved_connections')::int AS slots
            FROM pg_roles WHERE rolname = current_user
            """
        )
        .fetchone()
    )
    if row is None:
        raise ProvisionError("PostgreSQL does not show the admin role in pg_roles")
    return row


def _admin_acts_as(
    conn: psycopg.Connection[Any], admin: dict[str, Any], roles: Sequence[str]
) -> set[str]:
    """Those of ``roles`` the admin may act as: all for a superuser, else its memberships."""
    if admin["rolsuper"]:
        return set(roles)
    rows = conn.execute(
        "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) "
        "AND pg_has_role(current_user, oid, 'MEMBER')",
        [list(roles)],
    ).fetchall()
    return {name for (name,) in rows}


def _limit_problems(admin: dict[str, Any], roles: Sequence[RoleSpec]) -> list[str]:
    return [
        f"{_where(role.service, 'postgres.connection_limit')}connection limit "
        f"{role.connection_limit} of role {role.name!r} is more than the server's "
        f"{admin['slots']} connection slots (max_connections minus the superusers' reserve)"
        for role in roles
        if role.connection_limit > admin["slots"]
    ]


def _privilege_problems(user: str, admin: dict[str, Any], plan: PostgresPlan) -> list[str]:
    if admin["rolsuper"]:
        return []
    problems: list[str] = []
    for obj in plan.objects:
        if obj.kind == "role" and obj.steps and not admin["rolcreaterole"]:
            needed = "CREATEROLE"
        elif obj.kind == "database" and obj.change == Change.CREATED and not admin["rolcreatedb"]:
            needed = "CREATEDB"
        else:
            continue
        problems.append(
            f"{_where(obj.service, 'postgres.' + obj.kind)}the admin role {user!r} "
            f"(POSTGRES_USER) lacks {needed}, which the plan needs to "
            f"{_main_step(obj).description}; grant it (ALTER ROLE {user} {needed}) or connect "
            "as a role that has it"
        )
    return problems


def _main_step(obj: ObjectPlan) -> Step:
    # A database's steps may start with the admin joining its owner's role.
    return next((st for st in obj.steps if st.description.startswith("create")), obj.steps[0])


def _unique(kind: str, names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{kind} {name!r} is listed twice")
        seen.add(name)


def _encrypt(conn: psycopg.Connection[Any], role: RoleSpec) -> str:
    verifier = conn.pgconn.encrypt_password(
        role.password.encode(), role.name.encode(), b"scram-sha-256"
    )
    return verifier.decode("ascii")


def _normalise_time(value: datetime | None) -> datetime | None:
    # NULL and 'infinity' both mean "never expires".
    if value is None or value.year >= 9999:
        return None
    return value


def _read_roles(
    conn: psycopg.Connection[Any], names: Sequence[str]
) -> tuple[dict[str, dict[str, Any]], bool]:
    """Role rows by name, and whether password verifiers were readable."""
    rows, readable = read_roles(conn, names)
    return {row["rolname"]: row for row in rows}, readable


def _read_databases(
    conn: psycopg.Connection[Any], names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row).execute(
        """
        SELECT datname, pg_get_userbyid(datdba) AS owner,
               pg_encoding_to_char(encoding) AS encoding, datconnlimit AS connlimit,
               has_database_privilege('public', oid, 'CONNECT') AS public_connect,
               has_database_privilege('public', oid, 'TEMPORARY') AS public_temp,
               shobj_description(oid, 'pg_database') AS comment
        FROM pg_database WHERE datname = ANY(%s)
        """,
        [list(names)],
    )
    return {row["datname"]: row for row in cur.fetchall()}
