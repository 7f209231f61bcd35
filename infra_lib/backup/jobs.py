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
    DatasetRestore,
    DrillReport,
    ProgressCallback,
    RestoreReport,
    Target,
)
from infra_lib.backup.target import Job, get_target, target_names
from infra_lib.errors import BackupError, ConfigError, InfraError

if TYPE_CHECKING:
    from infra_lib.backup.crypto import Passphrase
    from infra_lib.backup.remote import RemoteArchive, RemoteStore
    from infra_lib.manifest import Manifest, ServiceManifest
    from infra_lib.stack.compose import Stack

__all__ = [
    "ArchiveSource",
    "BackupIncomplete",
    "BackupOutcome",
    "LocalArchives",
    "RemoteArchives",
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
    names = target_names()
    if target == "all":
        return list(names)
    if target in names:
        return [target]
    raise ConfigError(f"unknown --target {target!r}; use one of {', '.join(names)} or all")


def _service(manifest: Manifest | None, name: str) -> ServiceManifest:
    if manifest is None:
        raise ConfigError("--service needs the manifest (infra.toml) to know what it uses")
    for service in manifest.services:
        if service.name == name:
            return service
    known = ", ".join(s.name for s in manifest.services) or "none"
    raise ConfigError(f"service {name!r} is not in the manifest; its services are: {known}")


def _targets_for(targets: Sequence[Target], service: ServiceManifest | None) -> list[Target]:
    if service is None:
        return list(targets)
    used = [t for t in targets if get_target(t).uses(service)]
    if not used:
        raise ConfigError(
            f"service {service.name!r} uses none of {', '.join(targets)} (see its section in "
            "the manifest); nothing to do"
        )
    return used


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
    job = Job(stack, manifest, chosen, skip_bucket=_own_bucket(stack, remote))
    archive = get_target(target).backup(job, dest, scope=scope, on_progress=on_progress)
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


# -- restore ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocalArchives:
    """Archives in a local directory: each target's newest, or the one ``archive``."""

    dest: Path
    archive: Path | None = None

    @classmethod
    def at(cls, dest: Path, source: Path | Literal["latest"]) -> LocalArchives:
        """``source`` as ``inv restore --from`` takes it: ``latest`` (in ``dest``), an
        archive directory, or a directory of archives (its newest of each target)."""
        if source == "latest":
            return cls(dest)
        path = Path(source)
        if not (path / MANIFEST_NAME).exists() and path.is_dir():
            return cls(path)
        return cls(dest, path)

    def named(self) -> tuple[Target, str] | None:
        if self.archive is None:
            return None
        return read_archive(self.archive).target, str(self.archive)

    def pick(
        self, target: Target, wants: Callable[[ArchiveManifest], bool] | None, what: str
    ) -> Path:
        if self.archive is not None:
            return self.archive
        for info in reversed(list_archives(self.dest, target)):
            if wants is None or wants(info.manifest):
                return info.path
        raise BackupError(
            f"no complete {target} backup{what} in {self.dest}; make one with `inv backup`"
        )

    def fetch(self, picked: object, local: ExitStack) -> Path:
        if not isinstance(picked, Path):
            raise TypeError(f"not a local archive: {picked!r}")
        return picked


@dataclass(frozen=True, slots=True)
class RemoteArchives:
    """Archives in a bucket: each target's newest, or the one called ``name``.

    Each is downloaded into a private directory under ``work_dir`` for the
    restore and removed afterwards; encrypted ones need ``passphrase``.
    """

    remote: RemoteStore
    work_dir: Path
    name: str | None = None
    passphrase: Passphrase | None = None
    #: Download progress (the restore's own progress is passed to it).
    on_progress: ProgressCallback | None = None

    def named(self) -> tuple[Target, str] | None:
        if self.name is None:
            return None
        from infra_lib.backup.remote import find_remote

        found = find_remote(self.remote, self.name)
        return found.target, found.url

    def pick(
        self, target: Target, wants: Callable[[ArchiveManifest], bool] | None, what: str
    ) -> RemoteArchive:
        from infra_lib.backup.remote import find_remote, list_remote

        if self.name is not None:
            return find_remote(self.remote, self.name)
        found = [a for a in list_remote(self.remote, target) if wants is None or wants(a.manifest)]
        if not found:
            raise BackupError(
                f"no complete {target} backup{what} in {self.remote.location}; make one with "
                f"`inv backup --to {self.remote.location}`"
            )
        return found[-1]

    def fetch(self, picked: object, local: ExitStack) -> Path:
        from infra_lib.backup.remote import RemoteArchive, downloaded

        if not isinstance(picked, RemoteArchive):
            raise TypeError(f"not a remote archive: {picked!r}")
        logger.info("restore: downloading %s archive %s", picked.target, picked.url)
        return local.enter_context(
            downloaded(
                self.remote,
                picked,
                self.work_dir,
                passphrase=self.passphrase,
                on_progress=self.on_progress,
            )
        )


#: Where :func:`restore` takes its archives from.
ArchiveSource = LocalArchives | RemoteArchives


def restore(
    stack: Stack,
    targets: Sequence[Target],
    *,
    dest: Path | None = None,
    source: ArchiveSource | Path | Literal["latest"] = "latest",
    manifest: Manifest | None = None,
    service: str | None = None,
    into: str | None = None,
    force: bool = False,
    on_progress: ProgressCallback | None = None,
) -> list[RestoreReport]:
    """Restore each target from its newest archive (or from the one archive named).

    ``source`` is a :class:`LocalArchives` or :class:`RemoteArchives`, or as
    ``inv restore --from`` takes it: ``"latest"`` (in ``dest``), an archive
    directory, or a directory of archives (its newest archive of each target).

    With ``service`` only that service's database, Redis DB or prefixes are
    restored (from the newest archive that holds them). ``into`` restores
    beside the original: a database name, a Redis DB number or a bucket.
    Every archive is fetched and verified, and every target's refusing
    checks made, before anything is changed.
    """
    if not isinstance(source, LocalArchives | RemoteArchives):
        if dest is None and source == "latest":
            raise ConfigError("restore from the latest archive needs the archive directory")
        source = LocalArchives.at(dest or Path(), source)
    chosen = _service(manifest, service) if service else None
    named = source.named()
    if named is not None:
        found, where = named
        if found not in targets:
            raise ConfigError(
                f"{where} is a {found} archive, but --target asks for {', '.join(targets)}"
            )
        targets = [found]
    targets = _targets_for(targets, chosen)
    if into is not None and len(targets) != 1:
        raise ConfigError("--into names one database, DB or bucket: give one --target")
    job = Job(stack, manifest, chosen)
    what = f" holding {chosen.name}'s data" if chosen is not None else ""
    picked = []
    for target in targets:
        wants = get_target(target).holds(job) if chosen is not None and manifest else None
        picked.append((target, source.pick(target, wants, what)))
    with ExitStack() as local:
        paths = [(target, source.fetch(handle, local)) for target, handle in picked]
        _verify_all(paths, on_progress)
        _check_all(job, paths, into, force)
        reports = []
        for target, path in paths:
            logger.info("restore: %s from %s", target, path)
            reports.append(
                get_target(target).restore(
                    job, path, into=into, force=force, check_only=False, on_progress=on_progress
                )
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
    job: Job, picked: Sequence[tuple[Target, Path]], into: str | None, force: bool
) -> None:
    """Make every target's refusing checks before the first target is restored.

    Without it, a Redis DB holding keys was refused only after PostgreSQL
    had already been replaced.
    """
    if len(picked) < 2:
        return  # the one target's restore checks before it changes anything
    for target, archive in picked:
        get_target(target).restore(
            job, archive, into=into, force=force, check_only=True, on_progress=None
        )


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
    """:func:`restore` from archives in a bucket (a :class:`RemoteArchives` source).

    Every archive of the restore is downloaded into a private directory
    under ``work_dir`` and checked before any target is changed, restored
    from there and removed afterwards (so ``work_dir`` needs room for all of
    them at once). Encrypted archives need ``passphrase``.
    """
    return restore(
        stack,
        targets,
        source=RemoteArchives(remote, work_dir, name, passphrase, on_progress),
        manifest=manifest,
        service=service,
        into=into,
        force=force,
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
    path = archive if archive is not None else LocalArchives(dest).pick(target, None, "")
    started = time.monotonic()
    checked_at = datetime.now(UTC)
    datasets: list[DatasetRestore] = []
    try:
        datasets = get_target(target).drill(
            Job(stack, scratch_db=redis_scratch_db), path, on_progress=on_progress
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
