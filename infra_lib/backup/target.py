"""One shape for every backup target, and the registry that names them.

A target (PostgreSQL, Redis, object storage, ...) is one subclass of
:class:`BackupTarget`: what a service of the manifest uses of it,
how to back up, restore and drill it, how its datasets' ``details`` are
checked when an archive is read, and which archive holds one service's data.
:mod:`infra_lib.backup.jobs` and the archive readers only go through the
registry, so adding a target is one class and one :func:`register` call.

Adapters import their drivers inside their methods: reading an archive's
name or listing the targets must not load psycopg, redis and minio.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra_lib.errors import ConfigError

if TYPE_CHECKING:
    from infra_lib.backup.archive import ArchiveInfo, ArchiveManifest
    from infra_lib.backup.minio import BucketScope
    from infra_lib.backup.model import DatasetRestore, ProgressCallback, RestoreReport
    from infra_lib.manifest import Manifest, ServiceManifest
    from infra_lib.stack.compose import Stack
    from infra_lib.storage.config import S3Config

__all__ = [
    "BackupTarget",
    "Job",
    "MinioTarget",
    "PostgresTarget",
    "RedisTarget",
    "get_target",
    "register",
    "target_names",
    "unregister",
]


@dataclass(frozen=True, slots=True)
class Job:
    """What one backup, restore or drill works on.

    ``service`` narrows it to that service's data (``manifest`` says what
    the service uses). ``skip_bucket`` is a bucket a whole-store backup
    leaves out (the one the backups are uploaded to); ``scratch_db`` the
    Redis DB a drill may use.
    """

    stack: Stack
    manifest: Manifest | None = None
    service: ServiceManifest | None = None
    skip_bucket: str | None = None
    scratch_db: int | None = None


_REGISTRY: dict[str, BackupTarget] = {}


def register(target: BackupTarget) -> None:
    """Make ``target`` known by its name; a name is taken once."""
    if not target.name.isidentifier() or not target.name.islower():
        raise ConfigError(f"a backup target's name is a lowercase word, not {target.name!r}")
    if target.name in _REGISTRY:
        raise ConfigError(f"backup target {target.name!r} is registered already")
    _REGISTRY[target.name] = target


def unregister(name: str) -> None:
    """Forget the target ``name`` (a test's own target, afterwards)."""
    _REGISTRY.pop(name, None)


def target_names() -> tuple[str, ...]:
    """The registered targets' names, in the order they were registered."""
    return tuple(_REGISTRY)


def get_target(name: str) -> BackupTarget:
    """The target called ``name``; ConfigError naming the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown backup target {name!r}; use one of {', '.join(_REGISTRY)}"
        ) from None


def _service_of(job: Job, what: str) -> ServiceManifest:
    if job.service is None:
        raise ConfigError(f"{what} needs a service")
    return job.service


def _dataset_test(name: str) -> Callable[[ArchiveManifest], bool]:
    return lambda manifest: manifest.dataset(name) is not None


class BackupTarget:
    """A kind of data the stack holds, and how to back it up and bring it back.

    A subclass names itself and says what a service uses of it
    (:meth:`uses`), how its datasets' ``details`` are checked and which
    archives hold a service's data (:meth:`holds`). For backup, restore and
    drill it either overrides those three methods, or names the ``module``
    whose ``backup_<name>``, ``restore_<name>`` and ``drill_<name>`` do the
    work and gives them the job's server (:meth:`_server`) and selection
    (:meth:`_selection`).
    """

    #: The target's name in ``--target``, archive names and manifests.
    name: str
    #: The module with the target's backup, restore and drill functions.
    module: str

    def uses(self, service: ServiceManifest) -> bool:
        """Whether ``service`` keeps data in this target (per the manifest)."""
        raise NotImplementedError

    def check_details(self, dataset: str, details: dict[str, Any]) -> None:
        """Raise ValueError when a dataset's ``details`` in an archive break the schema."""
        raise NotImplementedError

    def holds(self, job: Job) -> Callable[[ArchiveManifest], bool]:
        """A test for archives that hold ``job.service``'s data."""
        raise NotImplementedError

    def _function(self, verb: str) -> Callable[..., Any]:
        import importlib

        function: Callable[..., Any] = getattr(
            importlib.import_module(self.module), f"{verb}_{self.name}"
        )
        return function

    def _server(self, job: Job) -> Any:
        """What the module's functions take first: a source or a config."""
        raise NotImplementedError

    def _selection(self, job: Job, *, backup: bool) -> dict[str, Any]:
        """The keyword that narrows the work to ``job.service`` (none: everything)."""
        raise NotImplementedError

    def _into(self, into: str | None) -> dict[str, Any]:
        return {"into": into}

    def _drill_options(self, job: Job) -> dict[str, Any]:
        return {}

    def backup(
        self, job: Job, dest: Path, *, scope: str, on_progress: ProgressCallback | None
    ) -> ArchiveInfo:
        """Write one archive of what ``job`` covers into ``dest``."""
        info: ArchiveInfo = self._function("backup")(
            self._server(job),
            dest,
            **self._selection(job, backup=True),
            scope=scope,
            on_progress=on_progress,
        )
        return info

    def restore(
        self,
        job: Job,
        archive: Path,
        *,
        into: str | None,
        force: bool,
        check_only: bool,
        on_progress: ProgressCallback | None,
    ) -> RestoreReport:
        """Restore what ``job`` covers from ``archive``; only the checks that can
        refuse with ``check_only``."""
        report: RestoreReport = self._function("restore")(
            self._server(job),
            archive,
            **self._selection(job, backup=False),
            **self._into(into),
            force=force,
            check_only=check_only,
            on_progress=on_progress,
        )
        return report

    def drill(
        self, job: Job, archive: Path, *, on_progress: ProgressCallback | None
    ) -> list[DatasetRestore]:
        """Restore ``archive`` into scratch copies, compare them, and remove them."""
        datasets: list[DatasetRestore] = self._function("drill")(
            self._server(job), archive, **self._drill_options(job), on_progress=on_progress
        )
        return datasets


class PostgresTarget(BackupTarget):
    """The stack's PostgreSQL: one dataset per database (``pg_dump``)."""

    name = "postgres"
    module = "infra_lib.backup.postgres"

    def uses(self, service: ServiceManifest) -> bool:
        return service.postgres is not None

    @staticmethod
    def database(service: ServiceManifest) -> str:
        """The database ``service`` uses."""
        if service.postgres is None:
            raise ConfigError(f"service {service.name!r} has no postgres section in the manifest")
        return service.postgres.database

    def check_details(self, dataset: str, details: dict[str, Any]) -> None:
        from infra_lib.backup.details import PostgresDetails, pg_name

        PostgresDetails.model_validate(details)
        pg_name(dataset)

    def holds(self, job: Job) -> Callable[[ArchiveManifest], bool]:
        return _dataset_test(self.database(_service_of(job, "holds")))

    def _server(self, job: Job) -> Any:
        from infra_lib.backup.postgres import PostgresSource

        return PostgresSource.from_stack(job.stack)

    def _selection(self, job: Job, *, backup: bool) -> dict[str, Any]:
        return {"databases": [self.database(job.service)] if job.service else None}


class RedisTarget(BackupTarget):
    """The stack's Redis: one dataset per DB (``DUMP`` of every key, with TTLs)."""

    name = "redis"
    module = "infra_lib.backup.redis"

    def uses(self, service: ServiceManifest) -> bool:
        return service.redis is not None

    @staticmethod
    def db(stack: Stack, service: ServiceManifest) -> int:
        """The DB number ``service`` uses: fixed in the manifest, or from the allocator."""
        if service.redis is None:
            raise ConfigError(f"service {service.name!r} has no redis section in the manifest")
        if service.redis.db != "auto":
            return service.redis.db
        from infra_lib.redis.allocator import RedisDbAllocator
        from infra_lib.redis.config import RedisConfig

        with RedisDbAllocator(RedisConfig.from_stack(stack.settings)) as allocator:
            db = allocator.list().get(service.name)
        if db is None:
            raise ConfigError(
                f"service {service.name!r} has no Redis DB allocated yet; run `inv provision` first"
            )
        return db

    def check_details(self, dataset: str, details: dict[str, Any]) -> None:
        from infra_lib.backup.details import RedisDetails

        db = RedisDetails.model_validate(details).db
        if dataset != f"db{db}":
            raise ValueError(f"dataset {dataset!r} does not match its details.db {db}")

    def holds(self, job: Job) -> Callable[[ArchiveManifest], bool]:
        from infra_lib.backup.redis import dataset_name

        return _dataset_test(dataset_name(self.db(job.stack, _service_of(job, "holds"))))

    def _server(self, job: Job) -> Any:
        from infra_lib.redis.config import RedisConfig

        return RedisConfig.from_stack(job.stack.settings)

    def _selection(self, job: Job, *, backup: bool) -> dict[str, Any]:
        return {"dbs": [self.db(job.stack, job.service)] if job.service else None}

    def _into(self, into: str | None) -> dict[str, Any]:
        if into is not None and not into.isdigit():
            raise ConfigError(f"--into for redis is a DB number, not {into!r}")
        return {"into": int(into) if into is not None else None}

    def _drill_options(self, job: Job) -> dict[str, Any]:
        return {"scratch_db": job.scratch_db}


class MinioTarget(BackupTarget):
    """The stack's object storage: one dataset per bucket, or prefixes in one."""

    name = "minio"
    module = "infra_lib.backup.minio"

    def uses(self, service: ServiceManifest) -> bool:
        return service.storage is not None and bool(service.storage.prefixes)

    @staticmethod
    def scope(manifest: Manifest | None, service: ServiceManifest) -> BucketScope:
        """The bucket and prefixes ``service`` uses."""
        from infra_lib.backup.minio import BucketScope

        if manifest is None:
            raise ConfigError("--service needs the manifest (infra.toml) to know what it uses")
        if service.storage is None or not service.storage.prefixes:
            raise ConfigError(f"service {service.name!r} has no storage prefixes in the manifest")
        return BucketScope(manifest.project.bucket_name, tuple(service.storage.prefixes))

    def check_details(self, dataset: str, details: dict[str, Any]) -> None:
        from infra_lib.backup.details import MinioDetails

        scope = MinioDetails.model_validate(details)
        expected = (
            scope.bucket if not scope.prefixes else f"{scope.bucket}:{','.join(scope.prefixes)}"
        )
        if dataset != expected:
            raise ValueError(
                f"dataset {dataset!r} does not match its details (bucket and prefixes say "
                f"{expected!r})"
            )

    def holds(self, job: Job) -> Callable[[ArchiveManifest], bool]:
        from infra_lib.backup.minio import BucketScope

        want = self.scope(job.manifest, _service_of(job, "holds"))

        def covers(m: ArchiveManifest) -> bool:
            # An archive of the whole bucket, or of prefixes that include the
            # service's, holds its objects.
            for d in m.datasets:
                have = BucketScope(
                    d.details.get("bucket", ""), tuple(d.details.get("prefixes", ()))
                )
                if have.bucket == want.bucket and (
                    not have.prefixes or all(have.covers(p) for p in want.prefixes)
                ):
                    return True
            return False

        return covers

    def _server(self, job: Job) -> Any:
        from infra_lib.storage.config import S3Config

        return S3Config.from_stack(job.stack.settings)

    def _selection(self, job: Job, *, backup: bool) -> dict[str, Any]:
        if job.service is not None:
            return {"scopes": [self.scope(job.manifest, job.service)]}
        if backup and job.skip_bucket is not None:
            return {"scopes": _buckets_except(self._server(job), job.skip_bucket)}
        return {"scopes": None}


def _buckets_except(store: S3Config, bucket: str) -> list[BucketScope]:
    """Every bucket of ``store`` but ``bucket`` and the stack's own internal ones."""
    import logging

    from infra_lib.backup.minio import BucketScope
    from infra_lib.backup.minio_staging import is_internal_bucket
    from infra_lib.storage.config import translate_errors

    with translate_errors(store, "list the buckets"):
        names = [b.name for b in store.client().list_buckets()]
    logging.getLogger(__name__).info(
        "backup: leaving out %s, which holds the backups themselves", bucket
    )
    return [BucketScope(n) for n in names if n != bucket and not is_internal_bucket(n)]


for _target in (PostgresTarget(), RedisTarget(), MinioTarget()):
    register(_target)
