"""A service's objects in a snapshot: server-side copies, and back.

Part of ``inv snapshot``: every object under a service's prefixes is copied
by the server itself (``CopyObject``: no bytes through the client) into the
bucket :data:`SNAPSHOT_BUCKET`, under ``<snapshot>/<service>/<key>``. What
was copied (key, size, ETag) is listed in a local file, mode 0600, beside
the snapshot's other parts. Backups skip that bucket: a snapshot is local
and disposable.

Restoring first checks that every listed object is still in the snapshot
bucket, then copies each back over the live key and only then removes the
live objects the snapshot did not have; a failure before the copies leaves
everything as it was. Object storage has no transaction, so a reader during
the copies can see some objects already restored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from infra_lib.errors import ConfigError, ServiceUnavailable
from infra_lib.stack.envfile import write_private_file

if TYPE_CHECKING:
    from minio import Minio

__all__ = [
    "SNAPSHOT_BUCKET",
    "ObjectSnapshot",
    "check_restorable",
    "read_object_snapshot",
    "remove_copies",
    "restore_objects",
    "save_objects",
]

#: Where snapshots' object copies live, one folder per snapshot and service.
SNAPSHOT_BUCKET = "infra-snapshots"
_FORMAT = 1
# Copies run on the server; a few in flight hide the round trips.
_WORKERS = 8

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ObjectSnapshot:
    """What an object snapshot file lists."""

    path: Path
    name: str
    service: str
    bucket: str
    prefixes: tuple[str, ...]
    created: datetime
    objects: tuple[tuple[str, int, str], ...]

    @property
    def size_bytes(self) -> int:
        """The bytes of all copied objects."""
        return sum(size for _, size, _ in self.objects)

    @property
    def folder(self) -> str:
        """The copies' folder in :data:`SNAPSHOT_BUCKET`."""
        return f"{self.name}/{self.service}/"


def _each(work: Callable[[T], object], items: Sequence[T]) -> None:
    if not items:
        return
    with ThreadPoolExecutor(min(_WORKERS, len(items))) as pool:
        for _ in pool.map(work, items):
            pass


def _listed(client: Minio, bucket: str, prefixes: Iterable[str]) -> list[Any]:
    return [
        o
        for prefix in prefixes
        for o in client.list_objects(bucket, prefix=prefix, recursive=True)
        if o.object_name and not o.is_dir
    ]


def _remove(client: Minio, bucket: str, keys: Sequence[str]) -> None:
    from minio.deleteobjects import DeleteObject

    # remove_objects is lazy: its errors come only while it is iterated.
    failed = list(client.remove_objects(bucket, [DeleteObject(k) for k in keys]))
    if failed:
        raise ServiceUnavailable(
            f"MinIO did not remove {len(failed)} object(s) of {bucket}: {failed[0].message}",
            service="minio",
        )


def save_objects(
    client: Minio,
    path: Path,
    *,
    name: str,
    service: str,
    bucket: str,
    prefixes: Sequence[str],
    created: datetime,
) -> ObjectSnapshot:
    """Copy the objects under ``prefixes`` of ``bucket`` into the snapshot; what was copied.

    All or nothing: if a copy fails, the copies made are removed.
    """
    from minio.commonconfig import CopySource

    if not client.bucket_exists(SNAPSHOT_BUCKET):
        client.make_bucket(SNAPSHOT_BUCKET)
    found = _listed(client, bucket, prefixes)
    folder = f"{name}/{service}/"

    def copy(item: Any) -> None:
        client.copy_object(
            SNAPSHOT_BUCKET, folder + item.object_name, CopySource(bucket, item.object_name)
        )

    try:
        _each(copy, found)
    except BaseException:
        _remove(client, SNAPSHOT_BUCKET, [folder + o.object_name for o in found])
        raise
    header = {
        "format": _FORMAT,
        "name": name,
        "service": service,
        "bucket": bucket,
        "prefixes": list(prefixes),
        "created": created.isoformat(),
        "objects": [[o.object_name, int(o.size or 0), str(o.etag or "")] for o in found],
    }
    write_private_file(path, json.dumps(header) + "\n")
    return read_object_snapshot(path)


def read_object_snapshot(path: Path) -> ObjectSnapshot:
    """The object snapshot listed at ``path``; :class:`ConfigError` if it is damaged."""

    def damaged(why: object) -> ConfigError:
        return ConfigError(f"object snapshot {path} cannot be read ({why}); remove the snapshot")

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise damaged(exc) from exc
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise damaged("not an object snapshot of this version")
    try:
        return ObjectSnapshot(
            path=path,
            name=str(data["name"]),
            service=str(data["service"]),
            bucket=str(data["bucket"]),
            prefixes=tuple(str(p) for p in data["prefixes"]),
            created=datetime.fromisoformat(str(data["created"])),
            objects=tuple((str(k), int(s), str(e)) for k, s, e in data["objects"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise damaged(exc) from exc


def check_restorable(client: Minio, snapshot: ObjectSnapshot) -> None:
    """:class:`ConfigError` unless every listed copy is still in the snapshot bucket."""
    there = (
        {o.object_name: o.size for o in _listed(client, SNAPSHOT_BUCKET, [snapshot.folder])}
        if client.bucket_exists(SNAPSHOT_BUCKET)
        else {}
    )
    missing = [k for k, size, _ in snapshot.objects if there.get(snapshot.folder + k) != size]
    if missing:
        raise ConfigError(
            f"{snapshot.service}: {len(missing)} object(s) of snapshot {snapshot.name!r} are "
            f"missing from bucket {SNAPSHOT_BUCKET} (first: {missing[0]}); nothing was changed. "
            f"Remove the snapshot (`inv snapshot rm {snapshot.name}`)."
        )


def restore_objects(client: Minio, snapshot: ObjectSnapshot) -> int:
    """Put the snapshot's objects back and remove the others under its prefixes.

    Returns how many live objects were removed because the snapshot did not
    have them.
    """
    from minio.commonconfig import CopySource

    check_restorable(client, snapshot)
    saved = {k for k, _, _ in snapshot.objects}

    def copy(key: str) -> None:
        client.copy_object(snapshot.bucket, key, CopySource(SNAPSHOT_BUCKET, snapshot.folder + key))

    _each(copy, sorted(saved))
    extra = [
        o.object_name
        for o in _listed(client, snapshot.bucket, snapshot.prefixes)
        if o.object_name not in saved
    ]
    if extra:
        _remove(client, snapshot.bucket, extra)
    return len(extra)


def remove_copies(client: Minio, name: str) -> None:
    """Remove every copy snapshot ``name`` holds (its list files are the caller's)."""
    if client.bucket_exists(SNAPSHOT_BUCKET):
        copies = _listed(client, SNAPSHOT_BUCKET, [f"{name}/"])
        _remove(client, SNAPSHOT_BUCKET, [o.object_name for o in copies])
