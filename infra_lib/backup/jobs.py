"""What ``inv backup``, ``inv restore`` and ``inv backups`` run against the compose stack.

Each function takes the :class:`~infra_lib.stack.compose.Stack` and the
manifest, works out which databases, Redis DBs and buckets a target (and
optionally one service) means, and calls the target's module. Against
managed servers call :mod:`infra_lib.backup.postgres`, ``.redis`` and
``.minio`` directly with their own configs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from infra_lib.backup.archive import (
    MANIFEST_NAME,
    ArchiveInfo,
    ArchiveManifest,
    list_archives,
    mark_verified,
    prune,
    read_archive,
    verify_archive,
)
from infra_lib.backup.model import (
    TARGETS,
    DatasetRestore,
    DrillReport,
    ProgressCallback,
    RestoreReport,
    Target,
)
from infra_lib.errors import BackupError, ConfigError, InfraError

if TYPE_CHECKING:
    from infra_lib.backup.crypto import Passphrase
    from infra_lib.backup.minio import BucketScope
    from infra_lib.backup.remote import RemoteArchive, RemoteStore
    from infra_lib.manifest import Manifest, ServiceManifest
    from infra_lib.stack.compose import Stack
    from infra_lib.storage.config import S3Config

__all__ = [
    "BackupIncomplete",
    "BackupOutcome",
    "backup",
    "default_dest",
    "drill",
    "drill_latest",
    "parse_targets",
    "restore",
    "restore_remote",
]

logger = logging.getLogger(__name__)


class BackupIncomplete(BackupError):
    """Some targets of :func:`backup` failed; the others were backed up.

    ``outcomes`` holds the archives written, ``failures`` each failed
    target's error. The exit code is the highest of the failures'.
    """

    def __init__(
        self, outcomes: Sequence[BackupOutcome], failures: dict[Target, InfraError]
    ) -> None:
        done = ", ".join(o.archive.target for o in outcomes) or "none"
        listing = "; ".join(f"{target}: {exc}" for target, exc in failures.items())
        super().__init__(
            f"backup of {len(failures)} target(s) failed ({listing}). Backed up: {done}."
        )
        self.outcomes = tuple(outcomes)
        self.failures = dict(failures)
        self.exit_code = max(exc.exit_code for exc in failures.values())


@dataclass(frozen=True, slots=True)
class BackupOutcome:
    """One archive written by :func:`backup`, what retention removed, and the drill."""

    archive: ArchiveInfo
    pruned: tuple[Path, ...]
    seconds: float
    drill: DrillReport | None = None
    #: ``s3://.../<archive name>`` once uploaded with ``remote=``.
    uploaded: str | None = None
    pruned_remote: tuple[str, ...] = ()


def default_dest(root: Path, project: str) -> Path:
    """Where a checkout keeps its archives: ``<root>/backups/<project>``."""
    return root / "backups" / project


def parse_targets(target: str) -> list[Target]:
    """``"all"`` or one target name, as a list; ConfigError for anything else."""
    if target == "all":
        return list(TARGETS)
    for known in TARGETS:
        if target == known:
            return [known]
    raise ConfigError(f"unknown --target {target!r}; use one of {', '.join(TARGETS)} or all")


# -- what a service means for each target -----------------------------------


def _service(manifest: Manifest | None, name: str) -> ServiceManifest:
    if manifest is None:
        raise ConfigError("--service needs the manifest (infra.toml) to know what it uses")
    for service in manifest.services:
        if service.name == name:
            return service
    known = ", ".join(s.name for s in manifest.services) or "none"
    raise ConfigError(f"service {name!r} is not in the manifest; its services are: {known}")


def _uses(service: ServiceManifest, target: Target) -> bool:
    if target == "postgres":
        return service.postgres is not None
    if target == "redis":
        return service.redis is not None
    return service.storage is not None and bool(service.storage.prefixes)


def _targets_for(targets: Sequence[Target], service: ServiceManifest | None) -> list[Target]:
    if service is None:
        return list(targets)
    used = [t for t in targets if _uses(service, t)]
    if not used:
        raise ConfigError(
            f"service {service.name!r} uses none of {', '.join(targets)} (see its section in "
            "the manifest); nothing to do"
        )
    return used


def _pg_database(service: ServiceManifest) -> str:
    if service.postgres is None:
        raise ConfigError(f"service {service.name!r} has no postgres section in the manifest")
    return service.postgres.database


def _redis_db(stack: Stack, service: ServiceManifest) -> int:
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


def _bucket_scope(manifest: Manifest | None, service: ServiceManifest) -> BucketScope:
    from infra_lib.backup.minio import BucketScope

    if manifest is None:
        raise ConfigError("--service needs the manifest (infra.toml) to know what it uses")
    if service.storage is None or not service.storage.prefixes:
        raise ConfigError(f"service {service.name!r} has no storage prefixes in the manifest")
    return BucketScope(manifest.project.bucket_name, tuple(service.storage.prefixes))


def _dataset_of(stack: Stack, manifest: Manifest, service: ServiceManifest, target: Target) -> str:
    if target == "postgres":
        return _pg_database(service)
    if target == "redis":
        from infra_lib.backup.redis import dataset_name

        return dataset_name(_redis_db(stack, service))
    return _bucket_scope(manifest, service).name


# -- backup -----------------------------------------------------------------


def backup(
    stack: Stack,
    targets: Sequence[Target],
    *,
    dest: Path,
    manifest: Manifest | None = None,
    service: str | None = None,
    keep: int | None = None,
    verify: bool = False,
    remote: RemoteStore | None = None,
    passphrase: Passphrase | None = None,
    on_progress: ProgressCallback | None = None,
) -> list[BackupOutcome]:
    """Back up each target (one service's data with ``service``) into ``dest``.

    After each archive is written, ``verify`` runs a restore drill on it,
    ``remote`` uploads it (kept locally as well; not when its drill failed),
    and ``keep`` prunes that target's archives of the same scope to the
    newest ``keep``, locally and in ``remote``. With ``passphrase`` the
    uploaded copies are encrypted (the local ones are not).

    A target that fails does not stop the others: when any failed,
    :class:`BackupIncomplete` is raised after the last one, carrying the
    outcomes of those that succeeded and each failure.
    """
    if keep is not None and keep < 1:
        raise ConfigError(f"--keep must be at least 1, not {keep}")
    if passphrase is not None and remote is None:
        raise ConfigError("encryption applies to uploaded archives; add --to s3://BUCKET/PREFIX")
    chosen = _service(manifest, service) if service else None
    scope = f"service:{service}" if service else "all"
    outcomes = []
    failures: dict[Target, InfraError] = {}
    for target in _targets_for(targets, chosen):
        try:
            outcomes.append(
                _backup_and_keep(
                    stack,
                    target,
                    dest,
                    manifest,
                    chosen,
                    scope,
                    keep,
                    verify,
                    remote,
                    passphrase,
                    on_progress,
                )
            )
        except InfraError as exc:
            # One target's failure (a full disk, a server down) must not cost
            # the others their backup.
            logger.warning("backup: %s failed: %s", target, exc)
            failures[target] = exc
    if failures:
        raise BackupIncomplete(outcomes, failures)
    return outcomes


def _backup_and_keep(
    stack: Stack,
    target: Target,
    dest: Path,
    manifest: Manifest | None,
    chosen: ServiceManifest | None,
    scope: str,
    keep: int | None,
    verify: bool,
    remote: RemoteStore | None,
    passphrase: Passphrase | None,
    on_progress: ProgressCallback | None,
) -> BackupOutcome:
    started = time.monotonic()
    archive = _backup_one(
        stack, target, dest, manifest, chosen, scope, on_progress, _own_bucket(stack, remote)
    )
    seconds = time.monotonic() - started
    report = (
        drill(stack, target, dest=dest, archive=archive.path, on_progress=on_progress)
        if verify
        else None
    )
    uploaded: str | None = None
    pruned_remote: tuple[str, ...] = ()
    if remote is not None and (report is None or report.ok):
        from infra_lib.backup.remote import prune_remote, upload_archive

        uploaded = upload_archive(remote, archive, passphrase=passphrase, on_progress=on_progress)
        if keep is not None:
            pruned_remote = tuple(prune_remote(remote, target, keep, scope=scope))
    pruned = tuple(prune(dest, target, keep, scope=scope)) if keep is not None else ()
    return BackupOutcome(
        read_archive(archive.path), pruned, seconds, report, uploaded, pruned_remote
    )


def _backup_one(
    stack: Stack,
    target: Target,
    dest: Path,
    manifest: Manifest | None,
    service: ServiceManifest | None,
    scope: str,
    on_progress: ProgressCallback | None,
    skip_bucket: str | None = None,
) -> ArchiveInfo:
    if target == "postgres":
        from infra_lib.backup.postgres import PostgresSource, backup_postgres

        databases = [_pg_database(service)] if service is not None else None
        return backup_postgres(
            PostgresSource.from_stack(stack),
            dest,
            databases=databases,
            scope=scope,
            on_progress=on_progress,
        )
    if target == "redis":
        from infra_lib.backup.redis import backup_redis
        from infra_lib.redis.config import RedisConfig

        dbs = [_redis_db(stack, service)] if service is not None else None
        return backup_redis(
            RedisConfig.from_stack(stack.settings),
            dest,
            dbs=dbs,
            scope=scope,
            on_progress=on_progress,
        )
    from infra_lib.backup.minio import backup_minio
    from infra_lib.storage.config import S3Config

    store = S3Config.from_stack(stack.settings)
    scopes = [_bucket_scope(manifest, service)] if service is not None else None
    if scopes is None and skip_bucket is not None:
        scopes = _buckets_except(store, skip_bucket)
    return backup_minio(
        store,
        dest,
        scopes=scopes,
        scope=scope,
        on_progress=on_progress,
    )


def _own_bucket(stack: Stack, remote: RemoteStore | None) -> str | None:
    """The backup bucket, when it lives on the stack's own MinIO.

    Backing that bucket up with the rest would copy every earlier archive
    into each new one.
    """
    if remote is None:
        return None
    from infra_lib.storage.config import S3Config

    if remote.config.endpoint != S3Config.from_stack(stack.settings).endpoint:
        return None
    return remote.location.bucket


def _buckets_except(store: S3Config, bucket: str) -> list[BucketScope]:
    from infra_lib.backup.minio import BucketScope
    from infra_lib.backup.minio_staging import is_internal_bucket
    from infra_lib.storage.config import translate_errors

    with translate_errors(store, "list the buckets"):
        names = [b.name for b in store.client().list_buckets()]
    logger.info("backup: leaving out %s, which holds the backups themselves", bucket)
    return [BucketScope(n) for n in names if n != bucket and not is_internal_bucket(n)]


# -- restore ----------------------------------------------------------------


def _find(
    dest: Path, target: Target, wants: Callable[[ArchiveManifest], bool] | None, what: str
) -> ArchiveInfo:
    for info in reversed(list_archives(dest, target)):
        if wants is None or wants(info.manifest):
            return info
    raise BackupError(f"no complete {target} backup{what} in {dest}; make one with `inv backup`")


def _holds_service_data(
    stack: Stack, manifest: Manifest, service: ServiceManifest, target: Target
) -> Callable[[ArchiveManifest], bool]:
    if target == "minio":
        from infra_lib.backup.minio import BucketScope

        want = _bucket_scope(manifest, service)

        def covers(m: ArchiveManifest) -> bool:
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
    name = _dataset_of(stack, manifest, service, target)
    return lambda m: m.dataset(name) is not None


def restore(
    stack: Stack,
    targets: Sequence[Target],
    *,
    dest: Path,
    source: Path | Literal["latest"] = "latest",
    manifest: Manifest | None = None,
    service: str | None = None,
    into: str | None = None,
    force: bool = False,
    on_progress: ProgressCallback | None = None,
) -> list[RestoreReport]:
    """Restore each target from its newest archive in ``dest`` (or from ``source``).

    ``source`` is ``"latest"``, an archive directory, or a directory of
    archives (its newest archive of each target is used).

    With ``service`` only that service's database, Redis DB or prefixes are
    restored (from the newest archive that holds them). ``into`` restores
    beside the original: a database name, a Redis DB number or a bucket.
    Every archive is verified before anything is changed.
    """
    chosen = _service(manifest, service) if service else None
    if source != "latest" and not (Path(source) / MANIFEST_NAME).exists() and Path(source).is_dir():
        # A directory of archives rather than one archive: its newest.
        dest, source = Path(source), "latest"
    if source != "latest":
        info = read_archive(Path(source))
        if info.target not in targets:
            raise ConfigError(
                f"{source} is a {info.target} archive, but --target asks for {', '.join(targets)}"
            )
        targets = [info.target]
    targets = _targets_for(targets, chosen)
    if into is not None and len(targets) != 1:
        raise ConfigError("--into names one database, DB or bucket: give one --target")
    picked: list[tuple[Target, Path]] = []
    for target in targets:
        if source != "latest":
            archive = Path(source)
        else:
            wants = (
                _holds_service_data(stack, manifest, chosen, target)
                if chosen is not None and manifest is not None
                else None
            )
            what = f" holding {chosen.name}'s data" if chosen is not None else ""
            archive = _find(dest, target, wants, what).path
        picked.append((target, archive))
    _verify_all(picked, on_progress)
    _check_all(stack, picked, manifest, chosen, into, force)
    reports = []
    for target, archive in picked:
        logger.info("restore: %s from %s", target, archive)
        reports.append(
            _restore_one(stack, target, archive, manifest, chosen, into, force, on_progress)
        )
    return reports


def _verify_all(
    picked: Sequence[tuple[Target, Path]], on_progress: ProgressCallback | None
) -> None:
    """Check every archive of a restore before the first change to any server.

    A damaged third archive must not be found after the first two targets
    were already replaced.
    """
    for target, archive in picked:
        verify_archive(archive, on_progress=on_progress)
        found = read_archive(archive).target
        if found != target:
            raise BackupError(f"{archive} is a {found} archive, not a {target} one")
    logger.info("restore: %d archive(s) checked; nothing was changed yet", len(picked))


def _check_all(
    stack: Stack,
    picked: Sequence[tuple[Target, Path]],
    manifest: Manifest | None,
    service: ServiceManifest | None,
    into: str | None,
    force: bool,
) -> None:
    """Make every target's refusing checks before the first target is restored.

    Without it, a Redis DB holding keys was refused only after PostgreSQL
    had already been replaced.
    """
    if len(picked) < 2:
        return  # the one target's restore checks before it changes anything
    for target, archive in picked:
        _restore_one(stack, target, archive, manifest, service, into, force, None, check_only=True)


def restore_remote(
    stack: Stack,
    targets: Sequence[Target],
    *,
    remote: RemoteStore,
    work_dir: Path,
    name: str | None = None,
    manifest: Manifest | None = None,
    service: str | None = None,
    into: str | None = None,
    force: bool = False,
    passphrase: Passphrase | None = None,
    on_progress: ProgressCallback | None = None,
) -> list[RestoreReport]:
    """:func:`restore` from archives in a bucket: archive ``name``, or each target's newest.

    Every archive of the restore is downloaded into a private directory
    under ``work_dir`` and checked before any target is changed, restored
    from there and removed afterwards (so ``work_dir`` needs room for all of
    them at once). Encrypted archives need ``passphrase``.
    """
    from infra_lib.backup.remote import downloaded, find_remote, list_remote

    chosen = _service(manifest, service) if service else None
    if name is not None:
        picked = [find_remote(remote, name)]
        if picked[0].target not in targets:
            raise ConfigError(
                f"{picked[0].url} is a {picked[0].target} archive, but --target asks for "
                f"{', '.join(targets)}"
            )
        targets = [picked[0].target]
    targets = _targets_for(targets, chosen)
    if into is not None and len(targets) != 1:
        raise ConfigError("--into names one database, DB or bucket: give one --target")
    chosen_archives: list[tuple[Target, RemoteArchive]] = []
    for target in targets:
        if name is not None:
            archive = picked[0]
        else:
            wants = (
                _holds_service_data(stack, manifest, chosen, target)
                if chosen is not None and manifest is not None
                else None
            )
            found = [a for a in list_remote(remote, target) if wants is None or wants(a.manifest)]
            if not found:
                what = f" holding {chosen.name}'s data" if chosen is not None else ""
                raise BackupError(
                    f"no complete {target} backup{what} in {remote.location}; make one with "
                    f"`inv backup --to {remote.location}`"
                )
            archive = found[-1]
        chosen_archives.append((target, archive))
    with ExitStack() as local:
        # Every archive is downloaded and checked before the first target changes.
        paths: list[tuple[Target, Path]] = []
        for target, archive in chosen_archives:
            logger.info("restore: downloading %s archive %s", target, archive.url)
            path = local.enter_context(
                downloaded(
                    remote, archive, work_dir, passphrase=passphrase, on_progress=on_progress
                )
            )
            paths.append((target, path))
        _verify_all(paths, on_progress)
        _check_all(stack, paths, manifest, chosen, into, force)
        reports = []
        for target, path in paths:
            logger.info("restore: %s from %s", target, path)
            reports.append(
                _restore_one(stack, target, path, manifest, chosen, into, force, on_progress)
            )
    return reports


def _restore_one(
    stack: Stack,
    target: Target,
    archive: Path,
    manifest: Manifest | None,
    service: ServiceManifest | None,
    into: str | None,
    force: bool,
    on_progress: ProgressCallback | None,
    *,
    check_only: bool = False,
) -> RestoreReport:
    if target == "postgres":
        from infra_lib.backup.postgres import PostgresSource, restore_postgres

        databases = [_pg_database(service)] if service is not None else None
        return restore_postgres(
            PostgresSource.from_stack(stack),
            archive,
            databases=databases,
            into=into,
            force=force,
            check_only=check_only,
            on_progress=on_progress,
        )
    if target == "redis":
        from infra_lib.backup.redis import restore_redis
        from infra_lib.redis.config import RedisConfig

        into_db: int | None = None
        if into is not None:
            if not into.isdigit():
                raise ConfigError(f"--into for redis is a DB number, not {into!r}")
            into_db = int(into)
        dbs = [_redis_db(stack, service)] if service is not None else None
        return restore_redis(
            RedisConfig.from_stack(stack.settings),
            archive,
            dbs=dbs,
            into=into_db,
            force=force,
            check_only=check_only,
            on_progress=on_progress,
        )
    from infra_lib.backup.minio import restore_minio
    from infra_lib.storage.config import S3Config

    scopes = [_bucket_scope(manifest, service)] if service is not None else None
    return restore_minio(
        S3Config.from_stack(stack.settings),
        archive,
        scopes=scopes,
        into=into,
        force=force,
        check_only=check_only,
        on_progress=on_progress,
    )


# -- drill ------------------------------------------------------------------


def drill(
    stack: Stack,
    target: Target,
    *,
    dest: Path,
    archive: Path | None = None,
    redis_scratch_db: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> DrillReport:
    """Prove an archive restores: into a scratch database, DB or bucket, compared, removed.

    Uses the newest archive of ``target`` unless ``archive`` is given. The
    outcome is written beside the manifest as ``verified.json`` and
    returned; a damaged or unrestorable archive gives ``ok=False`` (other
    failures, such as a server that does not answer, raise).
    """
    path = archive if archive is not None else _find(dest, target, None, "").path
    started = time.monotonic()
    checked_at = datetime.now(UTC)
    datasets: list[DatasetRestore] = []
    try:
        if target == "postgres":
            from infra_lib.backup.postgres import PostgresSource, drill_postgres

            datasets = drill_postgres(
                PostgresSource.from_stack(stack), path, on_progress=on_progress
            )
        elif target == "redis":
            from infra_lib.backup.redis import drill_redis
            from infra_lib.redis.config import RedisConfig

            datasets = drill_redis(
                RedisConfig.from_stack(stack.settings),
                path,
                scratch_db=redis_scratch_db,
                on_progress=on_progress,
            )
        else:
            from infra_lib.backup.minio import drill_minio
            from infra_lib.storage.config import S3Config

            datasets = drill_minio(
                S3Config.from_stack(stack.settings), path, on_progress=on_progress
            )
    except BackupError as exc:
        report = DrillReport(path, target, False, checked_at, time.monotonic() - started, str(exc))
    else:
        checked = sum(len(d.checks) for d in datasets)
        report = DrillReport(
            path,
            target,
            True,
            checked_at,
            time.monotonic() - started,
            f"restored {len(datasets)} dataset(s) into scratch copies; {checked} counts match",
            tuple(datasets),
        )
    if path.is_dir():
        mark_verified(report)
    return report


def drill_latest(
    stack: Stack,
    targets: Sequence[Target],
    *,
    dest: Path,
    redis_scratch_db: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> list[DrillReport]:
    """:func:`drill` the newest archive of each target in ``dest``."""
    return [
        drill(stack, target, dest=dest, redis_scratch_db=redis_scratch_db, on_progress=on_progress)
        for target in targets
    ]
