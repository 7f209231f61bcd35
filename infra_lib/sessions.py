"""Test sessions' resources: made with least privilege, reclaimed when their session dies.

Each test session (each pytest-xdist worker) has a tag (``gw1x3f9a2c1d``)
and, on the shared stack, resources named after it:

============  ==========================================  ===========================
backend       resource                                    its own credentials
============  ==========================================  ===========================
PostgreSQL    database ``pytest_<tag>``                   role ``pytest_<tag>_user``, owner
Redis         DB number of owner ``pytest-<tag>``         ACL user ``pytest-<tag>``, keys and
              keys under ``infra:test:<tag>:``            channels under the prefix only
MinIO         objects under ``pytest/<tag>/`` of          user ``svc-pytest-<tag>``, policy
              the ``infra-tests`` bucket                  for the prefix only
============  ==========================================  ===========================

The credentials are those a service gets in production shape, so a test
hits the permission errors the service would. The admin configs passed in
create and remove the resources, nothing else.

:func:`reclaim` removes the resources of sessions whose lease
(:mod:`infra_lib.leases`) names a dead holder, and with ``unleased=True``
also those no lease covers (made before leases existed). A live session's
resources are never touched.
"""

from __future__ import annotations

import logging
import re
import secrets
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from infra_lib.errors import InfraError, ProvisionError
from infra_lib.leases import Lease, LeaseStore
from infra_lib.redis.keys import TEST_PREFIX

if TYPE_CHECKING:
    from infra_lib.postgres.config import PostgresConfig
    from infra_lib.redis.config import RedisConfig
    from infra_lib.storage.config import S3Config

__all__ = [
    "TEST_BUCKET",
    "Admins",
    "ReclaimReport",
    "ReclaimedSession",
    "SessionNames",
    "create_bucket_prefix",
    "create_database",
    "create_redis",
    "drop_all",
    "reclaim",
]

_log = logging.getLogger(__name__)

#: Bucket the sessions' prefixes live in.
TEST_BUCKET = "infra-tests"

# The worker (gw0, main), "x", random hex: unlikely to be a real service's name.
_TAG = r"[a-z0-9]{1,16}x[0-9a-f]{6,8}"
_FOUND: dict[str, re.Pattern[str]] = {
    "database": re.compile(rf"pytest_({_TAG})"),
    "role": re.compile(rf"pytest_({_TAG})_user"),
    "redis db": re.compile(rf"pytest-({_TAG})"),
    "redis user": re.compile(rf"pytest-({_TAG})"),
    "storage user": re.compile(rf"svc-pytest-({_TAG})"),
    "objects": re.compile(rf"pytest/({_TAG})/"),
}


@dataclass(frozen=True, slots=True)
class SessionNames:
    """The names of one session's resources, all derived from its tag."""

    tag: str

    def __post_init__(self) -> None:
        if not re.fullmatch(_TAG, self.tag):
            raise ProvisionError(
                f"invalid test session tag {self.tag!r}: expected <worker>x<hex>, e.g. gw1x3f9a2c."
            )

    @classmethod
    def new(cls, worker: str = "main") -> SessionNames:
        """A fresh tag for a session or xdist worker (``gw1`` -> ``gw1x3f9a2c1d``)."""
        clean = re.sub(r"[^a-z0-9]", "", worker.lower())[:16] or "main"
        return cls(f"{clean}x{uuid.uuid4().hex[:8]}")

    @property
    def database(self) -> str:
        """The PostgreSQL database."""
        return f"pytest_{self.tag}"

    @property
    def role(self) -> str:
        """The PostgreSQL login role that owns :attr:`database`."""
        return f"pytest_{self.tag}_user"

    @property
    def owner(self) -> str:
        """Redis registry owner, Redis ACL user, MinIO service name."""
        return f"pytest-{self.tag}"

    @property
    def redis_prefix(self) -> str:
        """Every Redis key and channel of the session starts with this."""
        return f"{TEST_PREFIX}{self.tag}:"

    @property
    def object_prefix(self) -> str:
        """Every object key of the session in :data:`TEST_BUCKET` starts with this."""
        return f"pytest/{self.tag}/"


@dataclass(frozen=True, slots=True)
class Admins:
    """Admin connections to the backends; None leaves a backend alone."""

    redis: RedisConfig
    postgres: PostgresConfig | None = None
    storage: S3Config | None = None


# -- PostgreSQL -------------------------------------------------------------


def create_database(admin: PostgresConfig, names: SessionNames) -> PostgresConfig:
    """A new database owned by a new login role; the role's config, on that database."""
    from infra_lib.postgres.provisioner import DatabaseSpec, PostgresProvisioner, RoleSpec

    password = secrets.token_urlsafe(24)
    role = RoleSpec(names.role, password, service=names.owner)
    PostgresProvisioner(admin).ensure(
        [role], [DatabaseSpec(names.database, names.role, service=names.owner)]
    )
    return admin.with_login(names.role, password, names.database)


def _drop_postgres(admin: PostgresConfig, names: SessionNames) -> list[str]:
    from psycopg import sql

    from infra_lib.postgres.catalog import translate_errors
    from infra_lib.postgres.provisioner import PostgresProvisioner

    removed: list[str] = []
    action = f"drop test database {names.database} or role {names.role}"
    with PostgresProvisioner(admin).connect() as conn, translate_errors(admin, action):
        # IF EXISTS: a second reclaimer, or the session itself, may be first.
        for kind, name, statement in (
            ("database", names.database, "DROP DATABASE IF EXISTS {} WITH (FORCE)"),
            ("role", names.role, "DROP ROLE IF EXISTS {}"),
        ):
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s"
                if kind == "database"
                else "SELECT 1 FROM pg_roles WHERE rolname = %s",
                [name],
            ).fetchone()
            conn.execute(sql.SQL(statement).format(sql.Identifier(name)))
            if exists:
                removed.append(f"postgres {kind} {name}")
    return removed


def _found_postgres(admin: PostgresConfig) -> list[tuple[str, str]]:
    from infra_lib.postgres.provisioner import PostgresProvisioner

    with PostgresProvisioner(admin).connect() as conn:
        rows = conn.execute(
            "SELECT 'database', datname FROM pg_database WHERE datname LIKE 'pytest\\_%' "
            "UNION ALL SELECT 'role', rolname FROM pg_roles WHERE rolname LIKE 'pytest\\_%'"
        ).fetchall()
    return [(str(kind), str(name)) for kind, name in rows]


# -- Redis --------------------------------------------------------------------


def create_redis(admin: RedisConfig, names: SessionNames) -> tuple[int, RedisConfig]:
    """A DB number and an ACL user confined to :attr:`SessionNames.redis_prefix`.

    Returns the DB and the user's config.
    """
    from infra_lib.redis.acl import ensure_acl_user
    from infra_lib.redis.allocator import RedisDbAllocator

    password = secrets.token_urlsafe(24)
    with RedisDbAllocator(admin) as allocator:
        db = allocator.allocate(names.owner).db
    ensure_acl_user(admin, names.owner, password, key_prefix=names.redis_prefix)
    return db, replace(admin, username=names.owner, password=password)


def _drop_redis(admin: RedisConfig, names: SessionNames) -> list[str]:
    from infra_lib.redis.acl import delete_acl_user
    from infra_lib.redis.allocator import RedisDbAllocator
    from infra_lib.redis.config import translate_errors

    removed: list[str] = []
    if delete_acl_user(admin, names.owner):
        removed.append(f"redis user {names.owner}")
    with RedisDbAllocator(admin) as allocator:
        # The user could SELECT any DB, so its keys may be in any of them.
        with translate_errors(
            admin.address, f"delete keys under {names.redis_prefix!r}", secrets=[admin.password]
        ):
            deleted = 0
            for db in range(allocator.databases):
                with admin.client(db) as client:
                    batch = list(client.scan_iter(match=f"{names.redis_prefix}*", count=1000))
                    if batch:
                        deleted += int(client.delete(*batch))
        if deleted:
            removed.append(f"{deleted} redis keys under {names.redis_prefix}")
        if allocator.release(names.owner):
            removed.append(f"redis db of {names.owner}")
    return removed


def _found_redis(admin: RedisConfig) -> list[tuple[str, str]]:
    from infra_lib.redis.allocator import RedisDbAllocator
    from infra_lib.redis.config import translate_errors

    with RedisDbAllocator(admin) as allocator:
        owners = list(allocator.list())
    with (
        translate_errors(admin.address, "list ACL users", secrets=[admin.password]),
        admin.client(0, decode_responses=True) as client,
    ):
        users = [str(name) for name in client.acl_users()]
    return [("redis db", o) for o in owners] + [("redis user", u) for u in users]


# -- MinIO ----------------------------------------------------------------------


def create_bucket_prefix(admin: S3Config, names: SessionNames) -> S3Config:
    """The test bucket, and a user confined to :attr:`SessionNames.object_prefix`; its config."""
    from infra_lib.storage.buckets import BucketManager
    from infra_lib.storage.credentials import ensure_service_user

    BucketManager(admin).ensure_bucket(TEST_BUCKET)
    # MinIO caps secret keys at 40 characters.
    secret = secrets.token_urlsafe(30)
    creds = ensure_service_user(
        admin, names.owner, bucket=TEST_BUCKET, prefixes=[names.object_prefix], secret_key=secret
    )
    return replace(admin, access_key=creds.access_key, secret_key=secret, minio_admin=False)


def _drop_storage(admin: S3Config, names: SessionNames) -> list[str]:
    from minio.deleteobjects import DeleteObject

    from infra_lib.storage.config import translate_errors
    from infra_lib.storage.credentials import delete_service_user

    removed: list[str] = []
    client = admin.client()
    with translate_errors(admin, "delete test objects", bucket=TEST_BUCKET):
        if client.bucket_exists(TEST_BUCKET):
            doomed = [
                DeleteObject(obj.object_name)
                for obj in client.list_objects(
                    TEST_BUCKET, prefix=names.object_prefix, recursive=True
                )
                if obj.object_name is not None
            ]
            errors = list(client.remove_objects(TEST_BUCKET, iter(doomed)))
            if errors:
                raise ProvisionError(
                    f"could not delete test objects under {TEST_BUCKET}/{names.object_prefix}: "
                    f"{errors[:3]}"
                )
            if doomed:
                removed.append(f"{len(doomed)} objects under {names.object_prefix}")
    if delete_service_user(admin, names.owner):
        removed.append(f"storage user svc-{names.owner}")
    return removed


def _found_storage(admin: S3Config) -> list[tuple[str, str]]:
    import json

    from infra_lib.storage.config import translate_errors

    client = admin.client()
    found: list[tuple[str, str]] = []
    with translate_errors(admin, "list test users and prefixes", bucket=TEST_BUCKET):
        users = json.loads(admin.admin_client().user_list() or "{}")
        found += [("storage user", str(name)) for name in users]
        if client.bucket_exists(TEST_BUCKET):
            for obj in client.list_objects(TEST_BUCKET, prefix="pytest/"):
                if obj.object_name is not None:
                    found.append(("objects", obj.object_name))
    return found


# -- all backends ---------------------------------------------------------------


def drop_all(admins: Admins, names: SessionNames) -> list[str]:
    """Remove everything of ``names``' session from every backend given; what was removed."""
    removed = _drop_redis(admins.redis, names)
    if admins.postgres is not None:
        removed += _drop_postgres(admins.postgres, names)
    if admins.storage is not None:
        removed += _drop_storage(admins.storage, names)
    return removed


@dataclass(frozen=True, slots=True)
class ReclaimedSession:
    """A dead (or unleased) session and what was removed of it."""

    tag: str
    #: ``pid@host`` of the dead holder, or "no lease".
    holder: str
    removed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReclaimReport:
    """What :func:`reclaim` did (or, for a dry run, would do)."""

    reclaimed: tuple[ReclaimedSession, ...] = ()
    #: Tags of live sessions, left alone.
    live: tuple[str, ...] = ()
    #: Backends or sessions that could not be handled, with the reason.
    errors: tuple[str, ...] = field(default=())


def _found_tags(admins: Admins, errors: list[str]) -> set[str]:
    listers: list[tuple[str, Callable[[], list[tuple[str, str]]]]] = [
        ("redis", lambda: _found_redis(admins.redis))
    ]
    if admins.postgres is not None:
        postgres = admins.postgres
        listers.append(("postgres", lambda: _found_postgres(postgres)))
    if admins.storage is not None:
        storage = admins.storage
        listers.append(("storage", lambda: _found_storage(storage)))
    tags: set[str] = set()
    for backend, lister in listers:
        try:
            found = lister()
        except InfraError as exc:
            errors.append(f"{backend}: {exc}")
            continue
        for kind, name in found:
            match = _FOUND[kind].fullmatch(name)
            if match:
                tags.add(match.group(1))
    return tags


def reclaim(
    admins: Admins,
    *,
    unleased: bool = False,
    exclude: Collection[str] = (),
    dry_run: bool = False,
) -> ReclaimReport:
    """Remove the resources of dead test sessions; live ones are left alone.

    A session is dead when its lease names a holder that no longer runs
    (see :class:`~infra_lib.leases.Lease`). With ``unleased`` resources that
    no lease covers are removed too: sessions of a version before leases, or
    leftovers whose lease was lost. ``exclude`` are tags never to touch (the
    caller's own). Failures are collected in the report, not raised, so one
    unreachable backend does not stop the others.
    """
    from infra_lib.redis.allocator import RedisDbAllocator

    errors: list[str] = []
    with RedisDbAllocator(admins.redis) as allocator:
        registry_db = allocator.registry_db
    reclaimed: list[ReclaimedSession] = []
    live: list[str] = []
    with LeaseStore(admins.redis, registry_db) as store:
        # Resources first, then leases: a session takes its lease before it
        # creates anything, so every resource seen here has its lease visible.
        found = _found_tags(admins, errors)
        leases = store.all()
        for tag in sorted((found | set(leases)) - set(exclude)):
            seen = leases.get(tag)
            lease = None if seen is None else Lease.from_json(tag, seen)
            if seen is None and not unleased:
                continue
            if lease is not None and lease.alive():
                live.append(tag)
                continue
            holder = "no lease" if seen is None else (lease.holder() if lease else "bad lease")
            if dry_run:
                reclaimed.append(ReclaimedSession(tag, holder))
                continue
            mine = replace(Lease.for_this_process(tag), reclaiming=True)
            if not store.take(tag, seen, mine):
                # Renewed meanwhile, or another reclaimer was first.
                continue
            try:
                removed = drop_all(admins, SessionNames(tag))
            except InfraError as exc:
                # Our reclaiming lease stays; once we exit, the next reclaimer retries.
                errors.append(f"session {tag}: {exc}")
                continue
            store.release(tag)
            _log.info("reclaimed test session %s (%s): %s", tag, holder, ", ".join(removed))
            reclaimed.append(ReclaimedSession(tag, holder, tuple(removed)))
    return ReclaimReport(tuple(reclaimed), tuple(live), tuple(errors))
