"""Named local snapshots of services' data in every store: what ``inv snapshot`` runs.

One snapshot name covers, per service, a template copy of its PostgreSQL
database (:mod:`infra_lib.postgres.snapshots`), its Redis keys
(:mod:`infra_lib.redis.snapshots`) and server-side copies of its objects
(:mod:`infra_lib.storage.snapshots`). The key and object parts are listed
under ``<root>/<name>/`` (mode 0700, files 0600); the database part lives on
the server. Like its parts, a snapshot is local and disposable, not a backup.

Saving is all or nothing: a part that fails removes the parts already made.
Restoring checks every chosen part first (it is there and readable, and the
servers can load it) and changes nothing when one is not; then each store
is restored in turn, PostgreSQL and Redis atomically per service.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from infra_lib.errors import ConfigError
from infra_lib.postgres.snapshots import LATEST, SnapshotTarget, validate_snapshot_name

if TYPE_CHECKING:
    import redis
    from minio import Minio

    from infra_lib.postgres.config import PostgresConfig
    from infra_lib.redis.config import RedisConfig
    from infra_lib.redis.snapshots import KeySnapshot
    from infra_lib.storage.config import S3Config
    from infra_lib.storage.snapshots import ObjectSnapshot

__all__ = ["LATEST", "ServiceStores", "SnapshotPart", "StackSnapshots"]


@dataclass(frozen=True, slots=True)
class ServiceStores:
    """Where one service's data is: what a snapshot of it covers."""

    service: str
    postgres: SnapshotTarget | None = None
    redis_db: int | None = None
    redis_prefix: str | None = None
    storage_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SnapshotPart:
    """One store's part of one service in a snapshot."""

    name: str
    service: str
    store: str
    created: datetime
    size_bytes: int
    detail: str


class StackSnapshots:
    """Snapshots kept under ``root`` and on the stack's servers (admin connections)."""

    def __init__(
        self,
        root: Path,
        *,
        postgres: PostgresConfig,
        redis: RedisConfig | None,
        storage: S3Config | None,
        bucket: str,
    ) -> None:
        from infra_lib.postgres.snapshots import Snapshots

        self._root = root
        self._databases = Snapshots(postgres)
        self._redis = redis
        self._storage = storage
        self._bucket = bucket

    # -- reading ----------------------------------------------------------

    def _folder(self, name: str) -> Path:
        return self._root / validate_snapshot_name(name)

    def _keys(self, name: str, services: set[str]) -> list[KeySnapshot]:
        from infra_lib.redis.snapshots import read_key_snapshot

        paths = [self._folder(name) / f"redis-{s}.jsonl" for s in sorted(services)]
        return [read_key_snapshot(p) for p in paths if p.is_file()]

    def _objects(self, name: str, services: set[str]) -> list[ObjectSnapshot]:
        from infra_lib.storage.snapshots import read_object_snapshot

        paths = [self._folder(name) / f"storage-{s}.json" for s in sorted(services)]
        return [read_object_snapshot(p) for p in paths if p.is_file()]

    def _files(self, name: str | None, pattern: str) -> list[Path]:
        if not self._root.is_dir():
            return []
        folders = [self._folder(name)] if name else sorted(self._root.iterdir())
        return [f for d in folders if d.is_dir() for f in sorted(d.glob(pattern))]

    def find(self, name: str | None = None) -> list[SnapshotPart]:
        """Every part of every snapshot (or of ``name``), newest first.

        A part whose file cannot be read is listed as damaged rather than
        hiding the others: it can still be removed, never restored.
        """
        from infra_lib.redis.snapshots import read_key_snapshot
        from infra_lib.storage.snapshots import read_object_snapshot

        parts = [
            SnapshotPart(
                s.name,
                s.service,
                "postgres",
                s.created,
                s.size_bytes,
                f"database {s.database}, PostgreSQL {s.server_major}",
            )
            for s in self._databases.find(name)
        ]
        for path in self._files(name, "redis-*.jsonl"):
            try:
                k = read_key_snapshot(path)
            except ConfigError as exc:
                parts.append(_damaged(path, "redis", exc))
                continue
            parts.append(
                SnapshotPart(
                    path.parent.name,
                    k.service,
                    "redis",
                    k.created,
                    k.size_bytes,
                    f"{k.keys} key(s) under {k.prefix}, Redis {k.redis_version}",
                )
            )
        for path in self._files(name, "storage-*.json"):
            try:
                o = read_object_snapshot(path)
            except ConfigError as exc:
                parts.append(_damaged(path, "storage", exc))
                continue
            parts.append(
                SnapshotPart(
                    o.name,
                    o.service,
                    "storage",
                    o.created,
                    o.size_bytes,
                    f"{len(o.objects)} object(s) under {', '.join(o.prefixes)}",
                )
            )
        return sorted(parts, key=lambda p: (p.created, p.service, p.store), reverse=True)

    def latest(self) -> str:
        """The name of the newest snapshot; :class:`ConfigError` when there is none."""
        found = self.find()
        if not found:
            raise ConfigError("there is no snapshot yet; `inv snapshot save NAME` makes one")
        return found[0].name

    # -- changing ---------------------------------------------------------

    def save(self, name: str, services: Sequence[ServiceStores]) -> list[SnapshotPart]:
        """Snapshot every store of each of ``services`` as ``name``; all or nothing."""
        from infra_lib.redis.snapshots import save_keys
        from infra_lib.stack.envfile import make_private_dirs
        from infra_lib.storage.snapshots import save_objects

        folder = self._folder(name)
        if folder.exists() or self._databases.find(name):
            raise ConfigError(
                f"snapshot {name!r} exists; `inv snapshot rm {name}` removes it first"
            )
        if not any(s.postgres or s.redis_db is not None or s.storage_prefixes for s in services):
            raise ConfigError("none of the chosen services has a database, Redis keys or storage")
        created = datetime.now(UTC).replace(microsecond=0)
        targets = [s.postgres for s in services if s.postgres is not None]
        if targets:
            self._databases.save(name, targets)
        try:
            make_private_dirs(folder)
            for s in services:
                if s.redis_db is not None and s.redis_prefix is not None:
                    with self._redis_client(s.redis_db) as client:
                        save_keys(
                            client,
                            folder / f"redis-{s.service}.jsonl",
                            service=s.service,
                            db=s.redis_db,
                            prefix=s.redis_prefix,
                            created=created,
                        )
                if s.storage_prefixes:
                    save_objects(
                        self._storage_client(),
                        folder / f"storage-{s.service}.json",
                        name=name,
                        service=s.service,
                        bucket=self._bucket,
                        prefixes=s.storage_prefixes,
                        created=created,
                    )
        except BaseException:
            self._remove_parts(name)
            raise
        return self.find(name)

    def restore(
        self, name: str, services: Iterable[str] | None, redis_dbs: Mapping[str, int | None]
    ) -> list[str]:
        """Put snapshot ``name``'s parts (of ``services``, default all) back; the services.

        ``redis_dbs`` gives each service's Redis DB now. Every part is
        checked before any store changes.
        """
        from infra_lib.redis import snapshots as keys
        from infra_lib.storage import snapshots as objects

        parts = self.find(name)
        if not parts:
            known = sorted({p.name for p in self.find()})
            raise ConfigError(
                f"no snapshot named {name!r}"
                + (f"; snapshots: {', '.join(known)}" if known else "")
            )
        held = {p.service for p in parts}
        wanted = set(services) if services is not None else held
        missing = wanted - held
        if missing:
            raise ConfigError(f"snapshot {name!r} holds nothing of {', '.join(sorted(missing))}")
        key_parts = self._keys(name, wanted)
        object_parts = self._objects(name, wanted)
        for k in key_parts:
            db = redis_dbs.get(k.service)
            if db is None:
                raise ConfigError(f"{k.service} has no Redis DB now; `inv provision` gives it one")
            with self._redis_client(db) as client:
                keys.check_restorable(client, k)
        for o in object_parts:
            objects.check_restorable(self._storage_client(), o)
        with_db = sorted({p.service for p in parts if p.store == "postgres"} & wanted)
        if with_db:
            self._databases.restore(name, with_db)
        for k in key_parts:
            with self._redis_client(redis_dbs[k.service] or 0) as client:
                keys.restore_keys(client, k)
        for o in object_parts:
            objects.restore_objects(self._storage_client(), o)
        return sorted(wanted)

    def remove(self, name: str) -> list[SnapshotPart]:
        """Remove every part of snapshot ``name``; what was removed."""
        parts = self.find(name)
        if not parts:
            raise ConfigError(f"no snapshot named {name!r}; `inv snapshots` lists them")
        self._remove_parts(name)
        return parts

    # -- internals ----------------------------------------------------------

    def _remove_parts(self, name: str) -> None:
        from infra_lib.storage.snapshots import remove_copies

        if self._databases.find(name):
            self._databases.remove(name)
        if self._storage is not None:
            # By folder, not by list file: a damaged list still goes.
            remove_copies(self._storage_client(), name)
        shutil.rmtree(self._folder(name), ignore_errors=True)

    def _redis_client(self, db: int) -> redis.Redis:
        if self._redis is None:
            raise ConfigError("this stack has no Redis, but the snapshot has Redis keys")
        return self._redis.client(db)

    def _storage_client(self) -> Minio:
        if self._storage is None:
            raise ConfigError("this stack has no object storage, but the snapshot has objects")
        return self._storage.client()


def _damaged(path: Path, store: str, exc: ConfigError) -> SnapshotPart:
    service = path.stem.split("-", 1)[-1]
    created = datetime.fromtimestamp(path.stat().st_mtime, UTC).replace(microsecond=0)
    return SnapshotPart(
        path.parent.name, service, store, created, path.stat().st_size, f"DAMAGED: {exc}"
    )
