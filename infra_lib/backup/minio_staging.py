"""Staging buckets for a MinIO restore: the new objects land beside the target first.

S3 has no atomic rename, so a restore cannot swap a whole set of objects
into place the way ``SWAPDB`` or ``ALTER DATABASE ... RENAME`` do. Instead
the archive's objects are uploaded into a private staging bucket
(``infra-restore-<random>``) and counted there; the target is not touched
until that copy is complete. Then the staging bucket's plan object records
``phase: copying``, every object is copied server-side into the target,
objects of the target's scope that the archive does not hold are deleted,
and the staging bucket is removed.

A restore killed while staging leaves the target as it was; one killed
while copying leaves a complete, checked copy of the new data in the
staging bucket. The next restore of MinIO (or :func:`finish_interrupted`)
removes the first kind and finishes the second, so the target ends with
either its old objects or exactly the archive's.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from minio import Minio

__all__ = [
    "PLAN_KEY",
    "STAGING_PREFIX",
    "StagingPlan",
    "copy_into_place",
    "finish_interrupted",
    "is_internal_bucket",
    "new_staging_name",
    "remove_staging",
]

logger = logging.getLogger(__name__)

#: Staging buckets of restores; restore drills use ``infra-drill-``.
STAGING_PREFIX = "infra-restore-"
_DRILL_PREFIX = "infra-drill-"
#: The object in a staging bucket that says what it is for (never copied).
PLAN_KEY = ".infra-restore-plan.json"


def is_internal_bucket(name: str) -> bool:
    """Whether ``name`` is a restore's staging bucket, a drill's scratch bucket or snapshots'."""
    from infra_lib.storage.snapshots import SNAPSHOT_BUCKET

    return name == SNAPSHOT_BUCKET or name.startswith((STAGING_PREFIX, _DRILL_PREFIX))


def new_staging_name() -> str:
    """A fresh staging bucket name (lowercase, under 63 characters)."""
    return f"{STAGING_PREFIX}{secrets.token_hex(6)}-{datetime.now(UTC):%Y%m%d%H%M%S}"


@dataclass(frozen=True, slots=True)
class StagingPlan:
    """What a staging bucket holds and where it goes (its :data:`PLAN_KEY` object)."""

    staging: str
    target: str
    prefixes: tuple[str, ...]
    phase: str

    def write(self, client: Minio) -> None:
        body = json.dumps(
            {"target": self.target, "prefixes": list(self.prefixes), "phase": self.phase}
        ).encode()
        client.put_object(
            self.staging, PLAN_KEY, io.BytesIO(body), len(body), content_type="application/json"
        )

    @classmethod
    def read(cls, client: Minio, staging: str) -> StagingPlan | None:
        from minio.error import S3Error

        try:
            response = client.get_object(staging, PLAN_KEY)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                return None
            raise
        try:
            data: dict[str, Any] = json.loads(response.read())
        finally:
            response.close()
            response.release_conn()
        return cls(staging, str(data["target"]), tuple(data.get("prefixes", ())), data["phase"])


def _keys(client: Minio, bucket: str, prefixes: Sequence[str]) -> list[str]:
    return [
        obj.object_name
        for prefix in prefixes or ("",)
        for obj in client.list_objects(bucket, prefix=prefix or None, recursive=True)
        if not obj.is_dir and obj.object_name is not None
    ]


def _delete(client: Minio, bucket: str, keys: Sequence[str]) -> None:
    from minio.deleteobjects import DeleteObject

    for error in client.remove_objects(bucket, [DeleteObject(k) for k in keys]):
        from infra_lib.errors import BackupError

        raise BackupError(f"cannot delete {bucket}/{error.name}: {error.code}: {error.message}")


def remove_staging(client: Minio, staging: str) -> None:
    """Empty and remove a staging bucket."""
    _delete(client, staging, _keys(client, staging, ()))
    client.remove_bucket(staging)


def copy_into_place(client: Minio, plan: StagingPlan) -> tuple[int, int]:
    """Copy the staged objects over the target, drop the target's others; (copied, deleted).

    Idempotent, so an interrupted run can simply be repeated.
    """
    from minio.commonconfig import CopySource

    if plan.phase != "copying":
        StagingPlan(plan.staging, plan.target, plan.prefixes, "copying").write(client)
    staged = [k for k in _keys(client, plan.staging, ()) if k != PLAN_KEY]
    for key in staged:
        # Server-side copy keeps content type, user metadata and headers.
        client.copy_object(plan.target, key, CopySource(plan.staging, key))
    keep = set(staged)
    extra = [k for k in _keys(client, plan.target, plan.prefixes) if k not in keep]
    _delete(client, plan.target, extra)
    remove_staging(client, plan.staging)
    logger.info(
        "restore: copied %d objects from %s into %s, deleted %d others",
        len(staged),
        plan.staging,
        plan.target,
        len(extra),
    )
    return len(staged), len(extra)


def finish_interrupted(client: Minio) -> list[str]:
    """Finish or remove what interrupted restores left; one note per staging bucket.

    A staging bucket whose copy had begun is copied into place (its data is
    complete and was checked); one still being filled, or without a plan,
    is removed. Another restore running at the same moment then fails on
    its own missing staging bucket, before its target is touched.
    """
    notes = []
    for bucket in client.list_buckets():
        if not bucket.name.startswith(STAGING_PREFIX):
            continue
        plan = StagingPlan.read(client, bucket.name)
        if plan is not None and plan.phase == "copying":
            copied, deleted = copy_into_place(client, plan)
            notes.append(
                f"finished an interrupted restore into {plan.target}: copied {copied} object(s) "
                f"from {bucket.name}, deleted {deleted}"
            )
        else:
            remove_staging(client, bucket.name)
            notes.append(f"removed {bucket.name}, left by an interrupted restore")
        logger.warning("restore: %s", notes[-1])
    return notes
