"""Backups a team can trust: PostgreSQL, Redis and MinIO, checked and restorable.

- ``archive.py``: the on-disk archive (atomic writes, manifest with sha256,
  listing, verification, retention, drill marker).
- ``postgres.py``, ``redis.py``, ``minio.py``: one backup/restore/drill per target
  (``pg_tools.py``: where ``pg_dump`` and ``pg_restore`` run).
- ``target.py``: the one shape every target has (:class:`BackupTarget`) and the
  registry the jobs and archive readers go through.
- ``jobs.py``: what the Invoke tasks call against the compose stack.
- ``remote.py``: archives in an S3 bucket (upload, list, prune, download).
- ``streams.py``: moving a program's output to disk in big chunks.

Names are loaded on first use, so importing this package does not import
psycopg, redis-py or minio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra_lib._lazy import lazy_exports

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    "TARGETS": "infra_lib.backup.model",
    "CountCheck": "infra_lib.backup.model",
    "DatasetRestore": "infra_lib.backup.model",
    "DrillReport": "infra_lib.backup.model",
    "ProgressCallback": "infra_lib.backup.model",
    "RestoreReport": "infra_lib.backup.model",
    "Target": "infra_lib.backup.model",
    "ArchiveInfo": "infra_lib.backup.archive",
    "ArchiveManifest": "infra_lib.backup.archive",
    "ArchiveWriter": "infra_lib.backup.archive",
    "VerifiedMarker": "infra_lib.backup.archive",
    "latest": "infra_lib.backup.archive",
    "list_archives": "infra_lib.backup.archive",
    "mark_verified": "infra_lib.backup.archive",
    "prune": "infra_lib.backup.archive",
    "read_archive": "infra_lib.backup.archive",
    "verify_archive": "infra_lib.backup.archive",
    "BackupOutcome": "infra_lib.backup.jobs",
    "backup": "infra_lib.backup.jobs",
    "default_dest": "infra_lib.backup.jobs",
    "drill": "infra_lib.backup.jobs",
    "drill_latest": "infra_lib.backup.jobs",
    "parse_targets": "infra_lib.backup.jobs",
    "restore": "infra_lib.backup.jobs",
    "restore_remote": "infra_lib.backup.jobs",
    "LocalArchives": "infra_lib.backup.jobs",
    "RemoteArchives": "infra_lib.backup.jobs",
    "BackupTarget": "infra_lib.backup.target",
    "get_target": "infra_lib.backup.target",
    "register": "infra_lib.backup.target",
    "target_names": "infra_lib.backup.target",
    "PostgresSource": "infra_lib.backup.postgres",
    "backup_postgres": "infra_lib.backup.postgres",
    "drill_postgres": "infra_lib.backup.postgres",
    "restore_postgres": "infra_lib.backup.postgres",
    "backup_redis": "infra_lib.backup.redis",
    "drill_redis": "infra_lib.backup.redis",
    "restore_redis": "infra_lib.backup.redis",
    "BucketScope": "infra_lib.backup.minio",
    "backup_minio": "infra_lib.backup.minio",
    "drill_minio": "infra_lib.backup.minio",
    "restore_minio": "infra_lib.backup.minio",
}

__all__ = [
    "TARGETS",
    "ArchiveInfo",
    "ArchiveManifest",
    "ArchiveWriter",
    "BackupOutcome",
    "BackupTarget",
    "BucketScope",
    "CountCheck",
    "DatasetRestore",
    "DrillReport",
    "LocalArchives",
    "PostgresSource",
    "ProgressCallback",
    "RemoteArchives",
    "RestoreReport",
    "Target",
    "VerifiedMarker",
    "backup",
    "backup_minio",
    "backup_postgres",
    "backup_redis",
    "default_dest",
    "drill",
    "drill_latest",
    "drill_minio",
    "drill_postgres",
    "drill_redis",
    "get_target",
    "latest",
    "list_archives",
    "mark_verified",
    "parse_targets",
    "prune",
    "read_archive",
    "register",
    "restore",
    "restore_minio",
    "restore_postgres",
    "restore_redis",
    "restore_remote",
    "target_names",
    "verify_archive",
]

if TYPE_CHECKING:
    from infra_lib.backup.archive import (
        ArchiveInfo,
        ArchiveManifest,
        ArchiveWriter,
        VerifiedMarker,
        latest,
        list_archives,
        mark_verified,
        prune,
        read_archive,
        verify_archive,
    )
    from infra_lib.backup.jobs import (
        BackupOutcome,
        LocalArchives,
        RemoteArchives,
        backup,
        default_dest,
        drill,
        drill_latest,
        parse_targets,
        restore,
        restore_remote,
    )
    from infra_lib.backup.minio import (
        BucketScope,
        backup_minio,
        drill_minio,
        restore_minio,
    )
    from infra_lib.backup.model import (
        TARGETS,
        CountCheck,
        DatasetRestore,
        DrillReport,
        ProgressCallback,
        RestoreReport,
        Target,
    )
    from infra_lib.backup.postgres import (
        PostgresSource,
        backup_postgres,
        drill_postgres,
        restore_postgres,
    )
    from infra_lib.backup.redis import backup_redis, drill_redis, restore_redis
    from infra_lib.backup.target import BackupTarget, get_target, register, target_names


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
