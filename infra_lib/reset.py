"""Emptying one service's data: its database, its Redis keys and its objects.

What ``inv reset`` does before it seeds again. Only what belongs to the
service goes: its own database (dropped; provisioning then makes it again
with the same owner and grants), the keys under its Redis key prefix in its
DB, and the objects under its storage prefixes. Its credentials and env file
stay. :func:`find_data` says what is there first, so the caller can ask
before anything is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from infra_lib.errors import ServiceUnavailable
from infra_lib.redis.keys import prefix_pattern

if TYPE_CHECKING:
    from infra_lib.manifest import ServiceManifest
    from infra_lib.postgres.config import PostgresConfig
    from infra_lib.redis.config import RedisConfig
    from infra_lib.storage.config import S3Config

__all__ = ["AdminStores", "ServiceData", "empty_service", "find_data"]

# Relations a service made: tables, views, sequences, in any schema of its own.
_RELATIONS = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
"""


@dataclass(frozen=True)
class AdminStores:
    """The administrator connections a reset needs; None for a store the stack lacks."""

    postgres: PostgresConfig | None
    redis: RedisConfig | None
    storage: S3Config | None
    bucket: str


@dataclass(frozen=True)
class ServiceData:
    """How much of a service's data there is (or was removed)."""

    service: str
    relations: int = 0
    redis_keys: int = 0
    objects: int = 0

    @property
    def present(self) -> bool:
        """Whether a reset would lose anything."""
        return bool(self.relations or self.redis_keys or self.objects)

    def describe(self) -> str:
        """``board-service: 3 table(s)/view(s), 12 Redis key(s)`` or ``... empty``."""
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.relations, "table(s)/view(s)/sequence(s)"),
                (self.redis_keys, "Redis key(s)"),
                (self.objects, "object(s)"),
            )
            if n
        ]
        return f"{self.service}: {', '.join(parts) or 'empty'}"


def _pg(config: PostgresConfig, database: str) -> Any:
    import psycopg

    try:
        return psycopg.connect(**config.connect_kwargs(dbname=database, autocommit=True))
    except psycopg.OperationalError as exc:
        if "does not exist" in str(exc):
            return None
        raise ServiceUnavailable(
            f"cannot reach PostgreSQL at {config.host}:{config.port}: "
            f"{str(exc).strip().splitlines()[0]}",
            service="postgres",
        ) from exc


def find_data(service: ServiceManifest, admins: AdminStores, redis_db: int | None) -> ServiceData:
    """What ``service`` holds now; ``redis_db`` is its DB number (from its env file)."""
    relations = redis_keys = objects = 0
    if service.postgres is not None and admins.postgres is not None:
        conn = _pg(admins.postgres, service.postgres.database)
        if conn is not None:
            with conn:
                relations = int(conn.execute(_RELATIONS).fetchone()[0])
    if service.redis is not None and admins.redis is not None and redis_db is not None:
        with admins.redis.client(redis_db) as client:
            pattern = prefix_pattern(service.redis.prefix_for(service.name))
            redis_keys = sum(1 for _ in client.scan_iter(match=pattern, count=1000))
    if service.storage is not None and admins.storage is not None:
        client = admins.storage.client()
        for prefix in service.storage.prefixes:
            objects += sum(
                1 for _ in client.list_objects(admins.bucket, prefix=prefix, recursive=True)
            )
    return ServiceData(service.name, relations, redis_keys, objects)


def empty_service(
    service: ServiceManifest, admins: AdminStores, redis_db: int | None
) -> ServiceData:
    """Remove ``service``'s data; what was removed.

    The database is dropped (``WITH (FORCE)``: the service's open sessions
    end); the caller provisions it again. Redis keys are unlinked under the
    service's prefix only, so a DB shared with another service keeps the
    other's keys.
    """
    from psycopg import sql

    found = find_data(service, admins, redis_db)
    if service.postgres is not None and admins.postgres is not None:
        conn = _pg(admins.postgres, admins.postgres.dbname)
        with conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(service.postgres.database)
                )
            )
    if service.redis is not None and admins.redis is not None and redis_db is not None:
        with admins.redis.client(redis_db) as client:
            pattern = prefix_pattern(service.redis.prefix_for(service.name))
            batch: list[bytes] = []
            for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) == 1000:
                    client.unlink(*batch)
                    batch.clear()
            if batch:
                client.unlink(*batch)
    if service.storage is not None and admins.storage is not None:
        from minio.deleteobjects import DeleteObject

        client = admins.storage.client()
        for prefix in service.storage.prefixes:
            listed = client.list_objects(admins.bucket, prefix=prefix, recursive=True)
            names = [DeleteObject(o.object_name) for o in listed if o.object_name]
            # remove_objects is lazy: its errors come only while it is iterated.
            errors = list(client.remove_objects(admins.bucket, names))
            if errors:
                raise ServiceUnavailable(
                    f"MinIO did not remove {len(errors)} object(s) under {prefix!r}: "
                    f"{errors[0].message}",
                    service="minio",
                )
    return found
