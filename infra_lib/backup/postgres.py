"""PostgreSQL backup and restore with the server's own ``pg_dump`` and ``pg_restore``.

**Where the tools run** (the stack's container, the host, an image) is
:mod:`infra_lib.backup.pg_tools`; the admin connection and role reads are
:mod:`infra_lib.postgres.catalog`, shared with provisioning.

**What an archive holds.** One custom-format dump per database (already
compressed by ``pg_dump``; stored as is), ``pg_dumpall --globals-only`` as
gzipped SQL for rebuilding a whole server by hand, and ``roles.json``, the
same roles as data, which a restore reads to recreate missing roles without
running SQL from the archive (and never with privileged attributes: see
:mod:`infra_lib.backup.postgres_roles`). Both keep the SCRAM verifiers (a
restored role must be able to log in), so both are secrets: 0600 in a 0700
directory.

**Counts.** Every dump is taken in a snapshot exported by a
``REPEATABLE READ`` transaction (``pg_dump --snapshot``); exact
``count(*)`` per table, sequence values and the number of large objects are
read in that same snapshot while ``pg_dump`` streams, so they describe
exactly the rows in the dump even while services keep writing. An exact
count is one sequential scan per table; it runs on a second connection
alongside the dump, so it costs CPU rather than wall time (estimates from
``pg_class.reltuples`` would be free but could not prove a restore
complete). A restore counts the same way and compares.

**Restore transport.** The dump goes into ``pg_restore``'s standard input
the way the dump came out: the kernel copies the file into the pipe
(``sendfile``), with no copy of a gigabyte-sized file inside the container
and nothing secret left behind in it. What this gives up is
``pg_restore --jobs``, which needs a seekable file, and which a dump
written to a pipe (no data offsets in its table of contents) could not use
anyway.

**Restore safety.** The archive's checksums are checked before anything
is touched. Each database is restored into a new temporary database,
recounted and compared, and only then renamed into place; with ``force``
the existing database is dropped at that last moment. A failed or
incomplete restore therefore leaves the original database as it was.
"""

from __future__ import annotations

import concurrent.futures
import functools
import gzip
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import psycopg
from psycopg import sql

from infra_lib.backup.archive import (
    ArchiveInfo,
    ArchiveWriter,
    DatasetEntry,
    read_archive,
    verify_archive,
)
from infra_lib.backup.details import DATABASE_PRIVILEGES
from infra_lib.backup.model import (
    CountCheck,
    DatasetRestore,
    ProgressCallback,
    RestoreReport,
)
from infra_lib.backup.pg_tools import (
    ContainerPgTools,
    ImagePgTools,
    LocalPgTools,
    PgTools,
    choose_managed_tools,
)
from infra_lib.backup.pg_tools import check_client as _check_client
from infra_lib.backup.postgres_roles import ROLES_FILE
from infra_lib.backup.postgres_roles import ensure_roles as _ensure_roles
from infra_lib.backup.streams import Throttle, drain, feed_file
from infra_lib.errors import (
    BackupError,
    ConfigError,
    InfraError,
    RestoreRefused,
)
from infra_lib.names import validate_pg_identifier
from infra_lib.postgres.catalog import admin_connection, read_roles
from infra_lib.postgres.config import PostgresConfig

if TYPE_CHECKING:
    from infra_lib.stack.compose import Stack

__all__ = [
    "DEFAULT_COMPRESSION",
    "ContainerPgTools",
    "ImagePgTools",
    "LocalPgTools",
    "PgTools",
    "PostgresSource",
    "backup_postgres",
    "choose_managed_tools",
    "drill_postgres",
    "restore_postgres",
]

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: zstd level 3 dumps faster than pg_dump's default gzip and compresses about
#: as well (200 MB of table data: 1.2 s vs 4.0 s here). Needs PostgreSQL 16+
#: tools built with zstd, as the official images are.
DEFAULT_COMPRESSION = "zstd:3"
#: What ``pg_dump`` 15 and older take instead (gzip level 6, their default).
OLD_CLIENT_COMPRESSION = "6"
GLOBALS_FILE = "globals.sql.gz"
#: Marks temporary databases of a restore or drill, so a leftover is recognisable.
TEMP_COMMENT = "infra-lib restore in progress; safe to drop if no restore runs"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class PostgresSource:
    """A PostgreSQL server to back up or restore: a SQL connection plus the tools.

    ``config`` is an admin connection (the stack's superuser, or a managed
    server's admin role); ``origin`` is recorded in the manifest.
    """

    config: PostgresConfig
    tools: PgTools
    origin: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_stack(cls, stack: Stack) -> PostgresSource:
        """The stack's server, tools run inside its container; or ``POSTGRES_HOST``'s."""
        config = PostgresConfig.from_stack(stack.settings)
        if stack.settings.postgres_managed:
            source = cls.remote(config)
            with source.connect() as conn:
                server_major = conn.info.server_version // 10000
            tools = choose_managed_tools(config, stack.settings, server_major)
            return replace(source, tools=tools)
        return cls(
            config,
            ContainerPgTools.from_stack(stack),
            {"kind": "compose", "project": stack.project_name, "service": "postgres"},
        )

    @classmethod
    def remote(cls, config: PostgresConfig, *, bindir: Path | None = None) -> PostgresSource:
        """A server outside the stack (managed), with the local client tools."""
        return cls(
            config,
            LocalPgTools(config, bindir),
            {"kind": "remote", "host": config.host, "port": str(config.port)},
        )

    @contextmanager
    def connect(
        self, dbname: str | None = None, *, autocommit: bool = True
    ) -> Iterator[psycopg.Connection[Any]]:
        """A connection as the admin role; ServiceUnavailable when it fails."""
        with admin_connection(self.config, dbname, autocommit=autocommit) as conn:
            yield conn


# -- catalog ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Contents:
    """What a database holds, as a backup records it and a restore compares it."""

    tables: dict[str, int]
    sequences: dict[str, int | None]
    large_objects: int
    roles: list[str]


_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
  AND NOT EXISTS (
    SELECT 1 FROM pg_depend d
    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""

_SEQUENCES = """
SELECT schemaname, sequencename, last_value FROM pg_sequences
WHERE schemaname <> 'information_schema' AND schemaname NOT LIKE 'pg\\_%'
ORDER BY 1, 2
"""

# Roles the database's objects depend on: owners and grantees recorded in
# pg_shdepend, plus owners of the usual objects (the bootstrap superuser's
# ownership is not recorded there), the database owner and its grantees.
_ROLES = """
WITH db AS (SELECT oid, datdba, datacl FROM pg_database WHERE datname = current_database())
SELECT DISTINCT rolname FROM (
  SELECT r.rolname FROM pg_shdepend s JOIN pg_roles r ON r.oid = s.refobjid, db
    WHERE s.refclassid = 'pg_authid'::regclass AND (s.dbid = db.oid OR s.dbid = 0
      AND s.classid = 'pg_database'::regclass AND s.objid = db.oid)
  UNION SELECT pg_get_userbyid(datdba) FROM db
  UNION SELECT pg_get_userbyid(a.grantee) FROM db, aclexplode(db.datacl) a WHERE a.grantee <> 0
  UNION SELECT pg_get_userbyid(nspowner) FROM pg_namespace
    WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\\_%'
  UNION SELECT pg_get_userbyid(c.relowner) FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
  UNION SELECT pg_get_userbyid(lomowner) FROM pg_largeobject_metadata
) owners WHERE rolname IS NOT NULL AND rolname NOT LIKE 'pg\\_%'
ORDER BY 1
"""

_USER_DATA = """
SELECT
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema'
     AND n.nspname NOT LIKE 'pg\\_%'
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                     AND d.objid = c.oid AND d.deptype = 'e')),
  (SELECT count(*) FROM pg_largeobject_metadata)
"""

_DATABASE = """
SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,
       d.datlocprovider::text,
       coalesce(to_jsonb(d) ->> 'datlocale', to_jsonb(d) ->> 'daticulocale'),
       d.datconnlimit, shobj_description(d.oid, 'pg_database'), d.datacl IS NULL,
       (SELECT coalesce(jsonb_agg(jsonb_build_object(
                 'grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                 ELSE pg_get_userbyid(a.grantee) END,
                 'privilege', a.privilege_type, 'grantable', a.is_grantable)), '[]'::jsonb)
        FROM aclexplode(d.datacl) a)
FROM pg_database d WHERE d.datname = %s
"""


def _count_contents(conn: psycopg.Connection[Any]) -> _Contents:
    tables: dict[str, int] = {}
    for schema, table in conn.execute(_TABLES).fetchall():
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
        ).fetchone()
        tables[f"{schema}.{table}"] = int(row[0]) if row else 0
    sequences = {
        f"{schema}.{name}": (None if value is None else int(value))
        for schema, name, value in conn.execute(_SEQUENCES).fetchall()
    }
    lo_row = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()
    roles = [str(r[0]) for r in conn.execute(_ROLES).fetchall()]
    return _Contents(tables, sequences, int(lo_row[0]) if lo_row else 0, roles)


def _database_details(conn: psycopg.Connection[Any], name: str) -> dict[str, Any]:
    row = conn.execute(_DATABASE, [name]).fetchone()
    if row is None:
        raise BackupError(f"database {name!r} does not exist on the server")
    owner, encoding, collate, ctype, provider, locale, connlimit, comment, default_acl, acl = row
    return {
        "owner": owner,
        "encoding": encoding,
        "collate": collate,
        "ctype": ctype,
        "locale_provider": provider,
        "locale": locale,
        "connection_limit": connlimit,
        "comment": comment,
        "acl": None if default_acl else acl,
    }


#: Names of the temporary databases of restores and drills (LIKE patterns).
_TEMP_PATTERNS = ("infra\\_restore\\_%", "infra\\_drill\\_%")
_IS_TEMP = sql.SQL(
    "((datname LIKE %(restore)s OR datname LIKE %(drill)s) "
    "AND shobj_description(oid, 'pg_database') = %(comment)s)"
)
_TEMP_ARGS = {"restore": _TEMP_PATTERNS[0], "drill": _TEMP_PATTERNS[1], "comment": TEMP_COMMENT}


def _list_databases(conn: psycopg.Connection[Any]) -> list[str]:
    """Databases worth backing up: not templates, and not a restore's temporary copy."""
    rows = conn.execute(
        sql.SQL(
            "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn "
            "AND NOT {} ORDER BY 1"
        ).format(_IS_TEMP),
        _TEMP_ARGS,
    ).fetchall()
    return [str(r[0]) for r in rows]


def _drop_leftovers(admin: psycopg.Connection[Any]) -> list[str]:
    """Drop the temporary databases of interrupted restores and drills; their names.

    One with a session connected may belong to a restore still running and
    is left alone.
    """
    rows = admin.execute(
        sql.SQL(
            "SELECT datname FROM pg_database d WHERE {} AND NOT EXISTS "
            "(SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid) ORDER BY 1"
        ).format(_IS_TEMP),
        _TEMP_ARGS,
    ).fetchall()
    dropped = []
    for (name,) in rows:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        logger.warning("restore: dropped %s, left behind by an interrupted restore", name)
        dropped.append(str(name))
    return dropped


def _database_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None
    )


def _read_roles(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Every role as the archive's roles file records it, with its memberships."""
    rows, passwords = read_roles(conn)
    roles = [
        {
            "name": row["rolname"],
            "superuser": row["rolsuper"],
            "inherit": row["rolinherit"],
            "createrole": row["rolcreaterole"],
            "createdb": row["rolcreatedb"],
            "login": row["rolcanlogin"],
            "replication": row["rolreplication"],
            "bypassrls": row["rolbypassrls"],
            "connection_limit": row["rolconnlimit"],
            "valid_until": row["valid_until_text"],
            "password": row["rolpassword"],
            "comment": row["comment"],
        }
        for row in rows
    ]
    members = conn.execute(
        "SELECT pg_get_userbyid(roleid), pg_get_userbyid(member), admin_option "
        "FROM pg_auth_members ORDER BY 1, 2"
    ).fetchall()
    return {
        "passwords": passwords,
        "roles": roles,
        "memberships": [{"role": r, "member": m, "admin": a} for r, m, a in members],
    }


# -- backup -----------------------------------------------------------------


def _translated(action: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Turn psycopg errors escaping ``function`` into :class:`BackupError`."""

    def wrap(function: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(function)
        def translated(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return function(*args, **kwargs)
            except psycopg.Error as exc:
                detail = exc.diag.message_primary or str(exc).strip()
                raise BackupError(f"PostgreSQL failed while trying to {action}: {detail}") from exc

        return translated

    return wrap


@_translated("back up")
def backup_postgres(
    source: PostgresSource,
    dest: Path,
    *,
    databases: Sequence[str] | None = None,
    scope: str = "all",
    compress: str | None = None,
    role_passwords: bool = True,
    on_progress: ProgressCallback | None = None,
) -> ArchiveInfo:
    """Dump ``databases`` (every non-template database by default) into a new archive.

    ``compress`` is a ``pg_dump --compress`` value; by default
    :data:`DEFAULT_COMPRESSION`, or gzip for a ``pg_dump`` older than 16.
    ``role_passwords=False`` leaves password verifiers out of the globals;
    so does an admin that may not read them (a managed server). Raises
    :class:`BackupError` naming the database and the tool's error output; a
    failed backup leaves no archive behind.
    """
    with source.connect() as admin:
        server_version = str(admin.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        server_major = admin.info.server_version // 10000
        available = _list_databases(admin)
        wanted = list(dict.fromkeys(databases)) if databases is not None else available
        missing = [name for name in wanted if name not in available]
        if missing:
            raise BackupError(
                f"cannot back up database(s) {', '.join(missing)}: not on the server at "
                f"{source.config.host}:{source.config.port} (or not accepting connections)"
            )
        roles = _read_roles(admin)
        details = {name: _database_details(admin, name) for name in wanted}
    if role_passwords and not roles["passwords"]:
        # pg_dumpall would fail on pg_authid; the archive says it has no verifiers.
        logger.warning(
            "postgres: %s may not read password verifiers (a managed server): the archive's "
            "roles have no passwords, and the env files keep them",
            source.config.user,
        )
        role_passwords = False
    dump_version, dump_major = _check_client(source.tools, "pg_dump", server_major)
    _check_client(source.tools, "pg_dumpall", server_major)
    if compress is None:
        compress = DEFAULT_COMPRESSION if dump_major >= 16 else OLD_CLIENT_COMPRESSION

    with (
        ArchiveWriter(dest, "postgres") as writer,
        concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pg-globals") as pool,
    ):
        # Small, but a round trip through the container: overlap it with the dumps.
        globals_done = pool.submit(_dump_globals, source, writer, role_passwords=role_passwords)
        if not role_passwords:
            for role in roles["roles"]:
                role["password"] = None
        with writer.open(ROLES_FILE) as handle:
            handle.write(json.dumps(roles, indent=1, default=str).encode())
        datasets = []
        for index, name in enumerate(wanted, start=1):
            file_name = f"{index:03d}-{_SAFE.sub('_', name)[:60] or 'db'}.dump"
            contents = _dump_database(
                source, writer, name, file_name, compress=compress, on_progress=on_progress
            )
            datasets.append(
                DatasetEntry(
                    name=name,
                    files=(file_name,),
                    counts=contents.tables,
                    details={
                        **details[name],
                        "sequences": contents.sequences,
                        "large_objects": contents.large_objects,
                        "roles": contents.roles,
                    },
                )
            )
        globals_done.result()
        return writer.commit(
            scope=scope,
            source={**source.origin, "user": source.config.user},
            server={"version": server_version, "pg_dump": dump_version},
            datasets=datasets,
            included={
                "databases": wanted,
                "format": "pg_dump custom format, one file per database",
                "compress": compress,
                "globals": f"{GLOBALS_FILE} (pg_dumpall --globals-only)",
                "roles": ROLES_FILE,
                "role_passwords": role_passwords and roles["passwords"],
                "counts": "exact count(*) per table, in the dump's own snapshot",
                "not_included": "per-database settings (ALTER DATABASE ... SET)",
            },
        )


def _dump_globals(source: PostgresSource, writer: ArchiveWriter, *, role_passwords: bool) -> None:
    args = ["--globals-only", "--no-password"]
    if not role_passwords:
        args.append("--no-role-passwords")
    command = source.tools.command("pg_dumpall", args, what="pg_dumpall --globals-only")
    with writer.open(GLOBALS_FILE) as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        drain(command, gz.write)


def _dump_database(
    source: PostgresSource,
    writer: ArchiveWriter,
    name: str,
    file_name: str,
    *,
    compress: str,
    on_progress: ProgressCallback | None,
) -> _Contents:
    label = f"postgres {name}"
    with source.connect(name, autocommit=False) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        snapshot = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
        command = source.tools.command(
            "pg_dump",
            [
                "--format=custom",
                f"--compress={compress}",
                f"--snapshot={snapshot}",
                "--no-password",
            ],
            what=f"pg_dump of database {name}",
            database=name,
        )
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pg-count") as pool:
            counting = pool.submit(_count_contents, conn)
            try:
                with writer.open(file_name) as handle:
                    head = bytearray()

                    def sink(chunk: memoryview) -> None:
                        if len(head) < 5:
                            head.extend(chunk[: 5 - len(head)])
                        handle.write(chunk)

                    drain(command, sink, progress=Throttle(on_progress, label))
                    size = handle.size
            except BaseException:
                _cancel(conn)
                concurrent.futures.wait([counting])
                raise
            try:
                contents = counting.result()
            except psycopg.Error as exc:
                raise BackupError(
                    f"counting the rows of database {name} failed: {str(exc).strip()}"
                ) from exc
        conn.rollback()
    if bytes(head) != b"PGDMP":
        raise BackupError(f"pg_dump of database {name} did not produce a custom-format archive")
    logger.info(
        "backup: database %s: %d bytes, %d tables, in %.1f s",
        name,
        size,
        len(contents.tables),
        time.monotonic() - started,
    )
    return contents


def _cancel(conn: psycopg.Connection[Any]) -> None:
    try:
        conn.cancel_safe(timeout=5)
    except (psycopg.Error, OSError) as exc:
        logger.debug("could not cancel the count query: %s", exc)


# -- restore ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    dataset: DatasetEntry
    target: str
    exists: bool
    holds: str


@_translated("restore")
def restore_postgres(
    source: PostgresSource,
    archive: Path,
    *,
    databases: Sequence[str] | None = None,
    into: str | None = None,
    force: bool = False,
    no_owner: bool = False,
    check_only: bool = False,
    on_progress: ProgressCallback | None = None,
) -> RestoreReport:
    """Restore ``databases`` (all in the archive by default) from ``archive``.

    The archive is verified first. A target database that holds tables or
    large objects is refused with :class:`RestoreRefused` unless ``force``
    (it is then replaced once the restored copy has been checked). ``into``
    restores the single selected database under a new name beside the
    original. Missing roles the data needs are created from the archive.
    ``no_owner`` gives every object to the admin role instead.
    ``check_only`` makes only the checks that can refuse (selection,
    ``--into``, data in the way, the client's version) and changes nothing;
    it trusts that the caller has verified the archive, and reports no
    datasets.
    """
    started = time.monotonic()
    if not check_only:
        verify_archive(archive, on_progress=on_progress)
    manifest = read_archive(archive).manifest
    if manifest.target != "postgres":
        raise BackupError(f"{archive} is a {manifest.target} archive, not a postgres one")
    chosen = _choose(manifest.datasets, databases, archive)
    if into is not None:
        validate_pg_identifier(into, what="--into database name")
        if len(chosen) != 1:
            raise ConfigError(
                f"--into names one database, but {len(chosen)} would be restored "
                f"({', '.join(d.name for d in chosen)}); pick one with --service"
            )

    with source.connect() as admin:
        server_major = admin.info.server_version // 10000
        plans = [_plan(source, admin, d, into or d.name) for d in chosen]
        refused = [p for p in plans if p.holds]
        if refused and not force:
            listing = "; ".join(f"{p.target} holds {p.holds}" for p in refused)
            raise RestoreRefused(
                f"not restoring over existing data: {listing}. Nothing was changed. Restore "
                "beside it with --into NEW_NAME, or replace it with --force."
            )
        _check_client(source.tools, "pg_restore", server_major)
        if check_only:
            return RestoreReport(archive, "postgres", (), time.monotonic() - started)
        leftovers = _drop_leftovers(admin)
        created_roles: list[str] = []
        if not no_owner:
            created_roles = _ensure_roles(admin, archive, chosen)

    results = []
    for plan in plans:
        results.append(
            _restore_one(
                source,
                archive,
                plan,
                force=force,
                no_owner=no_owner,
                keep=True,
                notes=[
                    *(f"created role {r}" for r in created_roles),
                    *(f"dropped {d}, left behind by an interrupted restore" for d in leftovers),
                ]
                if plan is plans[0]
                else [],
                on_progress=on_progress,
            )
        )
    return RestoreReport(archive, "postgres", tuple(results), time.monotonic() - started)


@_translated("run a restore drill")
def drill_postgres(
    source: PostgresSource, archive: Path, *, on_progress: ProgressCallback | None = None
) -> list[DatasetRestore]:
    """Restore every database of ``archive`` into a scratch database, compare, drop it.

    Objects are restored without owners and grants, so a drill needs no
    roles and leaves nothing behind. Raises :class:`BackupError` (or
    :class:`BackupCorrupt`) when the archive would not restore intact.
    """
    verify_archive(archive, on_progress=on_progress)
    manifest = read_archive(archive).manifest
    if manifest.target != "postgres":
        raise BackupError(f"{archive} is a {manifest.target} archive, not a postgres one")
    with source.connect() as admin:
        _check_client(source.tools, "pg_restore", admin.info.server_version // 10000)
    results = []
    for dataset in manifest.datasets:
        scratch = f"infra_drill_{secrets.token_hex(4)}"
        plan = _Plan(dataset, scratch, exists=False, holds="")
        results.append(
            _restore_one(
                source,
                archive,
                plan,
                force=False,
                no_owner=True,
                keep=False,
                notes=[],
                on_progress=on_progress,
            )
        )
    return results


def _choose(
    datasets: Sequence[DatasetEntry], names: Sequence[str] | None, archive: Path
) -> list[DatasetEntry]:
    if names is None:
        return list(datasets)
    by_name = {d.name: d for d in datasets}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise BackupError(
            f"{archive} does not hold database(s) {', '.join(missing)}; it holds "
            f"{', '.join(by_name) or 'nothing'}"
        )
    return [by_name[n] for n in names]


def _plan(
    source: PostgresSource, admin: psycopg.Connection[Any], dataset: DatasetEntry, target: str
) -> _Plan:
    if not _database_exists(admin, target):
        return _Plan(dataset, target, exists=False, holds="")
    return _Plan(dataset, target, exists=True, holds=_user_data(source, target))


def _user_data(source: PostgresSource, name: str) -> str:
    """'' when ``name`` holds no user tables or large objects, else what it holds."""
    with source.connect(name) as conn:
        row = conn.execute(_USER_DATA).fetchone()
    tables, objects = (int(row[0]), int(row[1])) if row else (0, 0)
    parts = []
    if tables:
        parts.append(f"{tables} table(s)")
    if objects:
        parts.append(f"{objects} large object(s)")
    return " and ".join(parts)


def _restore_one(
    source: PostgresSource,
    archive: Path,
    plan: _Plan,
    *,
    force: bool,
    no_owner: bool,
    keep: bool,
    notes: list[str],
    on_progress: ProgressCallback | None,
) -> DatasetRestore:
    dataset = plan.dataset
    temp = plan.target if not keep else f"infra_restore_{secrets.token_hex(4)}"
    dump = archive / dataset.files[0]
    maintenance = "template1" if plan.target == source.config.dbname else None
    with source.connect(maintenance) as admin:
        _create_database(admin, temp, dataset.details, no_owner=no_owner)
    try:
        args = ["--exit-on-error", "--no-password", f"--dbname={temp}"]
        if no_owner:
            args += ["--no-owner", "--no-acl"]
        command = source.tools.command(
            "pg_restore", args, what=f"pg_restore of database {dataset.name}"
        )
        # verify_archive checked this file's hash before anything changed.
        feed_file(
            command,
            dump,
            progress=Throttle(on_progress, f"restore {dataset.name}", dump.stat().st_size),
        )
        with source.connect(temp) as conn:
            actual = _count_contents(conn)
        checks = _compare(dataset, actual)
        _require_match(dataset.name, checks)
        replaced = False
        if keep:
            with source.connect(maintenance) as admin:
                replaced = _swap_into_place(source, admin, temp, plan, force=force)
    except BaseException as exc:
        _drop_after_failure(source, maintenance, temp, exc)
        raise
    if not keep:
        with source.connect(maintenance) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(temp))
            )
        return DatasetRestore(
            dataset.name, plan.target, False, tuple(checks), (), dump.stat().st_size
        )
    out_notes = list(notes)
    if replaced:
        out_notes.append(
            f"dropped the existing database {plan.target} ({plan.holds or 'empty'}) and replaced it"
        )
    return DatasetRestore(
        dataset.name, plan.target, replaced, tuple(checks), tuple(out_notes), dump.stat().st_size
    )


def _drop_after_failure(
    source: PostgresSource, maintenance: str | None, temp: str, exc: BaseException
) -> None:
    """Drop the partial copy ``temp`` without hiding the error that stopped the restore."""
    try:
        with source.connect(maintenance) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(temp))
            )
    except (psycopg.Error, InfraError) as cleanup:
        logger.warning("restore: could not drop the partial copy %s: %s", temp, cleanup)
        if isinstance(exc, InfraError):
            exc.args = (
                f"{exc}. The partial copy {temp} could not be dropped ({cleanup}); it is "
                "never backed up, and the next `inv restore` drops it",
                *exc.args[1:],
            )


def _create_database(
    admin: psycopg.Connection[Any], name: str, details: dict[str, Any], *, no_owner: bool
) -> None:
    parts: list[sql.Composable] = [sql.SQL("TEMPLATE template0")]
    if not no_owner and details.get("owner"):
        parts.append(sql.SQL("OWNER {}").format(sql.Identifier(details["owner"])))
    if details.get("encoding"):
        parts.append(sql.SQL("ENCODING {}").format(sql.Literal(details["encoding"])))
    provider = {"c": "libc", "i": "icu", "b": "builtin"}.get(details.get("locale_provider") or "c")
    if provider != "libc":
        parts.append(sql.SQL("LOCALE_PROVIDER {}").format(sql.SQL(provider or "libc")))
        key = "ICU_LOCALE" if provider == "icu" else "BUILTIN_LOCALE"
        if details.get("locale"):
            parts.append(sql.SQL(key + " {}").format(sql.Literal(details["locale"])))
    if details.get("collate"):
        parts.append(sql.SQL("LC_COLLATE {}").format(sql.Literal(details["collate"])))
    if details.get("ctype"):
        parts.append(sql.SQL("LC_CTYPE {}").format(sql.Literal(details["ctype"])))
    ident = sql.Identifier(name)
    try:
        admin.execute(sql.SQL("CREATE DATABASE {} WITH {}").format(ident, sql.SQL(" ").join(parts)))
    except psycopg.Error as exc:
        raise BackupError(
            f"cannot create database {name}: {exc.diag.message_primary or exc}"
        ) from exc
    admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(ident, sql.Literal(TEMP_COMMENT)))
    if no_owner:
        return
    limit = details.get("connection_limit", -1)
    if limit != -1:
        admin.execute(
            sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(ident, sql.Literal(limit))
        )
    acl = details.get("acl")
    if acl is not None:
        admin.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident))
        for grant in acl:
            # The manifest was checked when read; the keyword still comes from
            # the allow-list, never from the archive's text.
            keyword = DATABASE_PRIVILEGES.get(grant["privilege"])
            if keyword is None:
                raise BackupError(
                    f"database {name}: details.acl privilege {grant['privilege']!r} is not one "
                    f"of {', '.join(DATABASE_PRIVILEGES)}"
                )
            grantee = (
                sql.SQL("PUBLIC")
                if grant["grantee"] == "PUBLIC"
                else sql.Identifier(grant["grantee"])
            )
            admin.execute(
                sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                    sql.SQL(keyword),
                    ident,
                    grantee,
                    sql.SQL(" WITH GRANT OPTION" if grant["grantable"] is True else ""),
                )
            )


def _swap_into_place(
    source: PostgresSource, admin: psycopg.Connection[Any], temp: str, plan: _Plan, *, force: bool
) -> bool:
    replaced = False
    if _database_exists(admin, plan.target):
        holds = _user_data(source, plan.target)
        if holds and not force:
            raise RestoreRefused(
                f"database {plan.target} received data ({holds}) while the restore ran; not "
                "replacing it. The restored copy was dropped. Use --force to replace it."
            )
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(plan.target)))
        replaced = True
        logger.warning("restore: dropped database %s to replace it", plan.target)
    admin.execute(
        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
            sql.Identifier(temp), sql.Identifier(plan.target)
        )
    )
    comment = plan.dataset.details.get("comment")
    admin.execute(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(plan.target), sql.Literal(comment) if comment else sql.NULL
        )
    )
    return replaced


def _require_match(name: str, checks: Sequence[CountCheck]) -> None:
    bad = [c for c in checks if not c.ok]
    if bad:
        listing = ", ".join(
            f"{c.item}: {c.expected} expected, {c.actual} restored" for c in bad[:10]
        )
        raise BackupError(
            f"the restored copy of database {name} does not match the backup "
            f"({listing}); the restored copy was dropped and nothing else was changed"
        )


def _compare(dataset: DatasetEntry, actual: _Contents) -> list[CountCheck]:
    checks = [
        CountCheck(f"table {name}", dataset.counts.get(name), actual.tables.get(name))
        for name in sorted(set(dataset.counts) | set(actual.tables))
    ]
    expected_seq: dict[str, int | None] = dataset.details.get("sequences", {})
    checks += [
        CountCheck(f"sequence {name}", expected_seq.get(name), actual.sequences.get(name))
        for name in sorted(set(expected_seq) | set(actual.sequences))
    ]
    checks.append(
        CountCheck(
            "large objects", int(dataset.details.get("large_objects", 0)), actual.large_objects
        )
    )
    return checks
