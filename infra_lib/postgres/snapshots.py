"""Named, local snapshots of services' PostgreSQL databases, for the development loop.

A snapshot is a copy of a database made by the server itself
(``CREATE DATABASE ... TEMPLATE``): seconds for a development database, no
dump and no restore. It lives on the same server and volume as its source,
so it is disposable, not a backup: it goes with the volume, and it is only
as safe as the server.

Each snapshot database is named from a hash of the snapshot and database
names (``infra_snap_<12 hex>``, well under PostgreSQL's 63-byte limit) and
carries what it is in its comment (JSON: snapshot, service, database, owner,
time, server major version). It refuses connections, so nothing writes to
it by mistake.

Copying needs the source without other sessions, so saving and restoring
end the sessions connected to the service's database (its service
reconnects). Restoring is atomic per database: the live database is renamed
aside, the copy is made under its name, and only then is the old one
dropped; if the copy fails the old one is renamed back.

Database-level grants and settings are not part of a template copy, so the
caller re-applies the service's provisioning after a restore.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from infra_lib.errors import ConfigError, ProvisionError

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

    from infra_lib.postgres.config import PostgresConfig

__all__ = [
    "LATEST",
    "SNAPSHOT_PREFIX",
    "Snapshot",
    "SnapshotTarget",
    "Snapshots",
    "validate_snapshot_name",
]

#: Every snapshot database's name starts with this.
SNAPSHOT_PREFIX = "infra_snap_"
#: Stands for the newest snapshot where a name is asked for; never a name itself.
LATEST = "latest"
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


def validate_snapshot_name(name: str) -> str:
    """``name`` if it is a valid snapshot name, else :class:`ConfigError`."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name == LATEST:
        raise ConfigError(
            f"invalid snapshot name {name!r}: use 1-63 lowercase letters, digits, '.', '_' "
            "or '-', starting with a letter or digit; `latest` stands for the newest"
        )
    return name


@dataclass(frozen=True, slots=True)
class SnapshotTarget:
    """A service's database that a snapshot covers."""

    service: str
    database: str
    owner: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One service's database in a named snapshot."""

    name: str
    service: str
    database: str
    owner: str
    created: datetime
    server_major: int
    copy: str
    size_bytes: int = 0


def _copy_name(snapshot: str, database: str) -> str:
    digest = hashlib.sha256(f"{snapshot}\0{database}".encode()).hexdigest()[:12]
    return f"{SNAPSHOT_PREFIX}{digest}"


def _strategy(major: int) -> sql.Composable:
    """Copy files, not WAL: measured here 3 to 4 times faster than PostgreSQL 15's default
    WAL_LOG for a 257 MB database (benchmarks/bench_snapshot.py); older servers copy
    files anyway and do not know the clause."""
    from psycopg import sql

    return sql.SQL(" STRATEGY FILE_COPY") if major >= 15 else sql.SQL("")


class Snapshots:
    """Snapshots on the server ``config`` reaches (an admin that may create databases)."""

    def __init__(self, config: PostgresConfig) -> None:
        self._config = config

    def _connect(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        from infra_lib.postgres.catalog import admin_connection

        return admin_connection(self._config, hint=" (to manage snapshots)")

    # -- reading ----------------------------------------------------------

    def find(self, name: str | None = None) -> list[Snapshot]:
        """Every snapshot on the server (or those of ``name``), newest first."""
        with self._connect() as conn:
            return self._list(conn, name)

    def _list(self, conn: psycopg.Connection[Any], name: str | None) -> list[Snapshot]:
        rows = conn.execute(
            "SELECT d.datname, shobj_description(d.oid, 'pg_database'), "
            "pg_database_size(d.oid) FROM pg_database d WHERE d.datname LIKE %s",
            (SNAPSHOT_PREFIX.replace("_", r"\_") + "%",),
        ).fetchall()
        found = []
        for copy, comment, size in rows:
            try:
                meta = json.loads(comment or "")
                snapshot = Snapshot(
                    name=str(meta["snapshot"]),
                    service=str(meta["service"]),
                    database=str(meta["database"]),
                    owner=str(meta["owner"]),
                    created=datetime.fromisoformat(str(meta["created"])),
                    server_major=int(meta["server_major"]),
                    copy=copy,
                    size_bytes=int(size or 0),
                )
            except (ValueError, KeyError, TypeError):
                continue  # not one of ours, or damaged: never touched
            if name is None or snapshot.name == name:
                found.append(snapshot)
        return sorted(found, key=lambda s: (s.created, s.service), reverse=True)

    def latest(self) -> str:
        """The name of the newest snapshot; :class:`ConfigError` when there is none."""
        snapshots = self.find()
        if not snapshots:
            raise ConfigError("there is no snapshot yet; `inv snapshot save NAME` makes one")
        return snapshots[0].name

    # -- changing ---------------------------------------------------------

    def save(self, name: str, targets: Sequence[SnapshotTarget]) -> list[Snapshot]:
        """Copy each target's database into snapshot ``name``.

        Refuses a name already taken (remove it first). All or nothing: a
        copy that fails removes the copies this call made.
        """
        from psycopg import errors, sql

        validate_snapshot_name(name)
        if not targets:
            raise ConfigError("no service with a PostgreSQL database was chosen")
        made: list[str] = []
        with self._connect() as conn:
            if self._list(conn, name):
                raise ConfigError(
                    f"snapshot {name!r} exists; `inv snapshot rm {name}` removes it first"
                )
            major = self._major(conn)
            created = datetime.now(UTC).replace(microsecond=0)
            try:
                for target in targets:
                    copy = _copy_name(name, target.database)
                    self._alone(
                        conn,
                        target.database,
                        sql.SQL("CREATE DATABASE {} TEMPLATE {}{}").format(
                            sql.Identifier(copy),
                            sql.Identifier(target.database),
                            _strategy(major),
                        ),
                    )
                    made.append(copy)
                    meta = {
                        "snapshot": name,
                        "service": target.service,
                        "database": target.database,
                        "owner": target.owner,
                        "created": created.isoformat(),
                        "server_major": major,
                    }
                    conn.execute(
                        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                            sql.Identifier(copy), sql.Literal(json.dumps(meta))
                        )
                    )
                    conn.execute(
                        sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(
                            sql.Identifier(copy)
                        )
                    )
            except errors.Error as exc:
                for copy in made:
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(copy)))
                raise ProvisionError(
                    f"snapshot {name!r} was not made: {str(exc).strip().splitlines()[0]}"
                ) from exc
            return self._list(conn, name)

    def restore(self, name: str, services: Iterable[str] | None = None) -> list[Snapshot]:
        """Put each database of snapshot ``name`` (or of ``services``) back; the snapshot stays.

        Every chosen part is checked first (it exists, same server major
        version); then each database is replaced atomically.
        """
        from psycopg import errors, sql

        with self._connect() as conn:
            parts = self._list(conn, name)
            if not parts:
                known = sorted({s.name for s in self._list(conn, None)})
                raise ConfigError(
                    f"no snapshot named {name!r}"
                    + (f"; snapshots: {', '.join(known)}" if known else "")
                )
            if services is not None:
                wanted = set(services)
                missing = wanted - {p.service for p in parts}
                if missing:
                    raise ConfigError(
                        f"snapshot {name!r} holds no database of {', '.join(sorted(missing))}"
                    )
                parts = [p for p in parts if p.service in wanted]
            major = self._major(conn)
            for part in parts:
                if part.server_major != major:
                    raise ConfigError(
                        f"snapshot {name!r} was made on PostgreSQL {part.server_major}, this "
                        f"server runs {major}: a template copy cannot cross major versions. "
                        "Use a backup (`inv backup` / `inv restore`) instead."
                    )
            for part in parts:
                # Named like a snapshot but without our comment: never listed.
                aside = _copy_name("\0aside", part.database)
                self._settle_interrupted(conn, part.database, aside)
                self._alone(
                    conn,
                    part.database,
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(part.database), sql.Identifier(aside)
                    ),
                )
                try:
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}{}").format(
                            sql.Identifier(part.database),
                            sql.Identifier(part.copy),
                            sql.Identifier(part.owner),
                            _strategy(major),
                        )
                    )
                except errors.Error as exc:
                    conn.execute(
                        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                            sql.Identifier(aside), sql.Identifier(part.database)
                        )
                    )
                    raise ProvisionError(
                        f"{part.service}: restoring snapshot {name!r} failed and the database "
                        f"was left as it was: {str(exc).strip().splitlines()[0]}"
                    ) from exc
                conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(aside)))
            return parts

    def remove(self, name: str) -> list[Snapshot]:
        """Drop every database of snapshot ``name``; what was removed."""
        from psycopg import sql

        with self._connect() as conn:
            parts = self._list(conn, name)
            if not parts:
                raise ConfigError(f"no snapshot named {name!r}; `inv snapshot list` shows them")
            for part in parts:
                conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(part.copy)))
            return parts

    # -- internals ----------------------------------------------------------

    @staticmethod
    def _major(conn: psycopg.Connection[Any]) -> int:
        return int(conn.info.server_version) // 10000

    @staticmethod
    def _settle_interrupted(conn: psycopg.Connection[Any], database: str, aside: str) -> None:
        """Finish what an interrupted restore left: never lose the data set aside.

        With the live database missing, the one set aside is the service's
        data and is renamed back; with both present, the restore had made its
        copy and only the old data was still to drop.
        """
        from psycopg import sql

        names = {
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname = ANY(%s)", ([database, aside],)
            )
        }
        if aside not in names:
            return
        if database in names:
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(aside)))
        else:
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(aside), sql.Identifier(database)
                )
            )

    @staticmethod
    def _alone(conn: psycopg.Connection[Any], database: str, statement: sql.Composed) -> None:
        """Run ``statement`` once ``database`` has no other session.

        A template copy and a rename need that; a service's pool reconnects
        at once, so its sessions are ended and the statement tried again a
        few times before giving up.
        """
        from psycopg import errors

        for attempt in range(20):
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
            try:
                conn.execute(statement)
            except errors.ObjectInUse:
                if attempt == 19:
                    raise
                time.sleep(0.1)
            else:
                return
