"""MinIO (S3) backup and restore: every object with its metadata, plus bucket settings.

An archive holds one ``objects.tar.gz`` with every object's bytes, written
as a stream (an object goes from the GET response through sha256 into the
tar without being held in memory), ``index.jsonl`` with one line per object
(bucket, key, size, sha256, content type, user metadata, standard headers)
and ``buckets.json`` with each whole bucket's settings: versioning,
lifecycle, policy, tags, default encryption. Tar member names are sequence
numbers, never object keys, so no key (``../x``, ``/etc/y``, 1 KiB of UTF-8)
can escape a directory if someone unpacks the tar by hand.

Only the newest version of each object is kept, and object tags, legal
holds and retention are not (the stack uses none of them). The MinIO SDK
offers no CORS calls, so CORS rules are not backed up either.

A service's data is a set of key prefixes in the shared bucket; backing up
one service keeps only its prefixes (and not the bucket's settings, which
belong to every service).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
import secrets
import tarfile
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from infra_lib.backup.archive import (
    ArchiveInfo,
    ArchiveWriter,
    DatasetEntry,
    read_archive,
    verify_archive,
)
from infra_lib.backup.minio_staging import (
    PLAN_KEY,
    StagingPlan,
    copy_into_place,
    finish_interrupted,
    is_internal_bucket,
    new_staging_name,
    remove_staging,
)
from infra_lib.backup.model import CountCheck, DatasetRestore, ProgressCallback, RestoreReport
from infra_lib.backup.streams import Throttle
from infra_lib.errors import (
    BackupCorrupt,
    BackupError,
    ConfigError,
    InfraError,
    RestoreRefused,
    ServiceUnavailable,
)

if TYPE_CHECKING:
    from minio import Minio

    from infra_lib.storage.config import S3Config

__all__ = ["BucketScope", "backup_minio", "drill_minio", "restore_minio"]

logger = logging.getLogger(__name__)

OBJECTS_FILE = "objects.tar.gz"
INDEX_FILE = "index.jsonl"
BUCKETS_FILE = "buckets.json"
#: Objects are often already compressed (images, video); level 1 costs little
#: CPU on those and still shrinks text and JSON.
_GZIP_LEVEL = 1
_TAR_BUFSIZE = 1 << 20
#: Headers S3 stores with an object besides content type and user metadata.
_KEPT_HEADERS = ("cache-control", "content-disposition", "content-encoding", "content-language")
_META_PREFIX = "x-amz-meta-"


@dataclass(frozen=True, slots=True)
class BucketScope:
    """A bucket, or some key prefixes in it (a service's share of the shared bucket)."""

    bucket: str
    prefixes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The dataset name in an archive: ``bucket`` or ``bucket:prefix1,prefix2``."""
        return self.bucket if not self.prefixes else f"{self.bucket}:{','.join(self.prefixes)}"

    def covers(self, key: str) -> bool:
        return not self.prefixes or key.startswith(self.prefixes)


@contextmanager
def _errors(store: S3Config, action: str) -> Iterator[None]:
    from minio.error import MinioException, S3Error
    from urllib3.exceptions import HTTPError

    try:
        yield
    except S3Error as exc:
        raise BackupError(
            f"object storage at {store.endpoint} refused to {action}: {exc.code}: {exc.message}"
        ) from exc
    except (HTTPError, OSError) as exc:
        raise ServiceUnavailable(
            f"cannot reach object storage at {store.endpoint} to {action}: {exc}",
            service="minio",
        ) from exc
    except MinioException as exc:
        raise BackupError(f"object storage at {store.endpoint} failed to {action}: {exc}") from exc


class _Hashing:
    """A reader that hashes and counts what passes through it."""

    def __init__(self, raw: Any, progress: Throttle | None = None) -> None:
        self._raw = raw
        self._progress = progress
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, amount: int = -1) -> bytes:
        data: bytes = self._raw.read(amount)
        self.sha256.update(data)
        self.size += len(data)
        if self._progress is not None:
            self._progress.add(len(data))
        return data


# -- backup -----------------------------------------------------------------


def _is_missing(exc: Exception, *codes: str) -> bool:
    from minio.error import S3Error

    return isinstance(exc, S3Error) and exc.code in codes


def _bucket_settings(client: Minio, bucket: str) -> dict[str, Any]:
    from minio.error import S3Error
    from minio.xml import marshal

    settings: dict[str, Any] = {}
    settings["versioning"] = client.get_bucket_versioning(bucket).status
    try:
        settings["policy"] = client.get_bucket_policy(bucket)
    except S3Error as exc:
        if not _is_missing(exc, "NoSuchBucketPolicy"):
            raise
        settings["policy"] = None
    lifecycle = client.get_bucket_lifecycle(bucket)
    settings["lifecycle"] = marshal(lifecycle).decode() if lifecycle is not None else None
    tags = client.get_bucket_tags(bucket)
    settings["tags"] = dict(tags) if tags else None
    encryption = client.get_bucket_encryption(bucket)
    settings["encryption"] = marshal(encryption).decode() if encryption is not None else None
    return settings


def backup_minio(
    store: S3Config,
    dest: Path,
    *,
    scopes: Sequence[BucketScope] | None = None,
    scope: str = "all",
    on_progress: ProgressCallback | None = None,
) -> ArchiveInfo:
    """Copy every object of ``scopes`` (every bucket by default) into a new archive."""
    client = store.client()
    with _errors(store, "list the buckets"):
        if scopes is None:
            # A restore's staging or a drill's scratch bucket is not data.
            chosen = [
                BucketScope(b.name) for b in client.list_buckets() if not is_internal_bucket(b.name)
            ]
        else:
            chosen = list(scopes)
            missing = [s.bucket for s in chosen if not client.bucket_exists(s.bucket)]
            if missing:
                raise BackupError(
                    f"bucket(s) {', '.join(missing)} do not exist at {store.endpoint}"
                )
    progress = Throttle(on_progress, "minio objects")
    with ArchiveWriter(dest, "minio") as writer:
        settings: dict[str, Any] = {}
        datasets = []
        member = 0
        with (
            writer.open(INDEX_FILE) as index,
            writer.open(OBJECTS_FILE) as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=_GZIP_LEVEL, mtime=0) as gz,
            tarfile.open(
                fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT, bufsize=_TAR_BUFSIZE
            ) as tar,
        ):
            for item in chosen:
                objects = total = 0
                with _errors(store, f"read bucket {item.bucket}"):
                    if not item.prefixes:
                        settings[item.bucket] = _bucket_settings(client, item.bucket)
                    for key in _keys(client, item):
                        entry = _copy_object(client, item, key, f"o/{member:09d}", tar, progress)
                        if entry is None:
                            continue
                        member += 1
                        index.write((json.dumps(entry, ensure_ascii=False) + "\n").encode())
                        objects += 1
                        total += entry["size"]
                datasets.append(
                    DatasetEntry(
                        name=item.name,
                        files=(INDEX_FILE, OBJECTS_FILE),
                        counts={"objects": objects, "bytes": total},
                        details={"bucket": item.bucket, "prefixes": list(item.prefixes)},
                    )
                )
                logger.info("backup: %s: %d objects, %d bytes", item.name, objects, total)
        with writer.open(BUCKETS_FILE) as handle:
            handle.write(json.dumps(settings, indent=1).encode())
        progress.finish()
        return writer.commit(
            scope=scope,
            source={"endpoint": store.endpoint},
            server={"kind": "s3"},
            datasets=datasets,
            included={
                "buckets": [s.name for s in chosen],
                "objects": "newest version of each object, content type, user metadata, "
                "cache-control/content-disposition/content-encoding/content-language",
                "bucket_settings": "versioning, lifecycle, policy, tags, default encryption",
                "not_included": "object versions, object tags, retention, CORS",
            },
        )


def _keys(client: Minio, item: BucketScope) -> Iterator[str]:
    for prefix in item.prefixes or ("",):
        for obj in client.list_objects(item.bucket, prefix=prefix or None, recursive=True):
            if not obj.is_dir and obj.object_name is not None:
                yield obj.object_name


def _copy_object(
    client: Minio,
    item: BucketScope,
    key: str,
    member: str,
    tar: tarfile.TarFile,
    progress: Throttle,
) -> dict[str, Any] | None:
    from minio.error import S3Error

    try:
        response = client.get_object(item.bucket, key)
    except S3Error as exc:
        if _is_missing(exc, "NoSuchKey"):
            logger.info("backup: %s/%s was deleted while backing up; skipped", item.bucket, key)
            return None
        raise
    try:
        headers = {name.lower(): value for name, value in response.headers.items()}
        size = int(headers["content-length"])
        info = tarfile.TarInfo(member)
        info.size = size
        info.mode = 0o600
        modified = headers.get("last-modified")
        if modified:
            from email.utils import parsedate_to_datetime

            info.mtime = int(parsedate_to_datetime(modified).timestamp())
        reader = _Hashing(response, progress)
        try:
            tar.addfile(info, reader)
        except OSError as exc:
            raise BackupError(
                f"object {item.bucket}/{key} ended after {reader.size} of {size} bytes "
                f"while backing it up: {exc}"
            ) from exc
    finally:
        response.close()
        response.release_conn()
    return {
        "dataset": item.name,
        "bucket": item.bucket,
        "key": key,
        "member": member,
        "size": size,
        "sha256": reader.sha256.hexdigest(),
        "content_type": headers.get("content-type", "application/octet-stream"),
        "metadata": {k: v for k, v in headers.items() if k.startswith(_META_PREFIX)},
        "headers": {k: headers[k] for k in _KEPT_HEADERS if k in headers},
        "last_modified": modified,
    }


# -- restore ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    dataset: DatasetEntry
    want: BucketScope
    target: str
    holds: int


_SHA256 = re.compile(r"[0-9a-f]{64}")
_HEADER_VALUE = re.compile(r"[^\x00-\x1f\x7f]{0,2048}")
_SETTINGS = {"versioning", "policy", "lifecycle", "tags", "encryption"}


def _entry_problem(entry: Any) -> str | None:
    """Why an ``index.jsonl`` line may not reach the server, or None.

    Its key and headers go into PUT requests: a key must be one S3 accepts,
    and only the headers a backup keeps may come back (no ``x-amz-acl``,
    no ``x-amz-website-redirect-location``, no CR/LF).
    """
    if not isinstance(entry, dict):
        return "is not a JSON object"
    key = entry.get("key")
    if not isinstance(key, str) or not key or len(key.encode()) > 1024 or "\x00" in key:
        return "key is not an S3 object key (1-1024 bytes of UTF-8)"
    for field in ("dataset", "bucket", "member"):
        if not isinstance(entry.get(field), str):
            return f"{field} is not a string"
    size = entry.get("size")
    if type(size) is not int or size < 0:
        return "size is not a byte count"
    if not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(entry["sha256"]):
        return "sha256 is not 64 lowercase hex digits"
    content_type = entry.get("content_type")
    if content_type is not None and not (
        isinstance(content_type, str) and _HEADER_VALUE.fullmatch(content_type)
    ):
        return "content_type is not a header value"
    for field, allowed in (("metadata", None), ("headers", _KEPT_HEADERS)):
        values = entry.get(field, {})
        if not isinstance(values, dict):
            return f"{field} is not an object"
        for name, value in values.items():
            if (allowed is None and not name.startswith(_META_PREFIX)) or (
                allowed is not None and name not in allowed
            ):
                return f"{field} names {name[:80]!r}, which a backup never keeps"
            if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
                return f"{field}.{name} is not a header value"
    return None


def _read_index(archive: Path) -> Iterator[dict[str, Any]]:
    with (archive / INDEX_FILE).open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                entry: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BackupCorrupt(
                    f"{archive / INDEX_FILE}: line {number} is not JSON", path=str(archive)
                ) from exc
            problem = _entry_problem(entry)
            if problem is not None:
                raise BackupCorrupt(
                    f"{archive / INDEX_FILE}: line {number}: {problem}; nothing was restored",
                    path=str(archive),
                )
            yield entry


def _read_settings(archive: Path) -> dict[str, Any]:
    """``buckets.json``, each bucket's settings typed as a backup writes them."""
    path = archive / BUCKETS_FILE
    try:
        settings = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise BackupCorrupt(f"{path} is not JSON", path=str(archive)) from exc
    problem = None
    if not isinstance(settings, dict):
        problem = "is not a JSON object"
    else:
        for bucket, values in settings.items():
            if not isinstance(values, dict) or set(values) - _SETTINGS:
                problem = f"bucket {bucket[:80]!r} has settings a backup never writes"
            elif any(
                values.get(k) is not None and not isinstance(values[k], str)
                for k in ("versioning", "policy", "lifecycle", "encryption")
            ) or not isinstance(values.get("tags") or {}, dict):
                problem = f"bucket {bucket[:80]!r} has settings of the wrong type"
    if problem is not None:
        raise BackupCorrupt(f"{path} {problem}; nothing was restored", path=str(archive))
    return dict(settings)


def _select(
    datasets: Sequence[DatasetEntry], wanted: Sequence[BucketScope] | None, archive: Path
) -> list[tuple[DatasetEntry, BucketScope]]:
    if wanted is None:
        return [
            (d, BucketScope(d.details["bucket"], tuple(d.details.get("prefixes", ()))))
            for d in datasets
        ]
    out = []
    for want in wanted:
        match = None
        for dataset in datasets:
            have = BucketScope(
                dataset.details["bucket"], tuple(dataset.details.get("prefixes", ()))
            )
            if have.bucket != want.bucket:
                continue
            if not have.prefixes or (want.prefixes and all(have.covers(p) for p in want.prefixes)):
                match = dataset
                break
        if match is None:
            raise BackupError(
                f"{archive} does not hold {want.name}; it holds "
                f"{', '.join(d.name for d in datasets) or 'nothing'}"
            )
        out.append((match, want))
    return out


def _count(
    client: Minio, bucket: str, want: BucketScope, skip: Sequence[str] = ()
) -> tuple[int, int]:
    objects = total = 0
    for prefix in want.prefixes or ("",):
        for obj in client.list_objects(bucket, prefix=prefix or None, recursive=True):
            if not obj.is_dir and obj.object_name not in skip:
                objects += 1
                total += int(obj.size or 0)
    return objects, total


def _holds(client: Minio, bucket: str, want: BucketScope) -> int:
    if not client.bucket_exists(bucket):
        return -1
    for prefix in want.prefixes or ("",):
        for obj in client.list_objects(bucket, prefix=prefix or None, recursive=True):
            if not obj.is_dir:
                return 1
    return 0


def restore_minio(
    store: S3Config,
    archive: Path,
    *,
    scopes: Sequence[BucketScope] | None = None,
    into: str | None = None,
    force: bool = False,
    check_only: bool = False,
    on_progress: ProgressCallback | None = None,
) -> RestoreReport:
    """Restore ``scopes`` (everything in the archive by default) from ``archive``.

    The archive is verified first. A bucket (or the service's prefixes in
    it) that holds objects is refused with :class:`RestoreRefused` unless
    ``force``, which deletes those objects first. ``into`` restores the
    single selected dataset into another bucket, created if missing.
    Bucket settings are restored for whole buckets only.

    ``check_only`` makes only the checks that can refuse and changes
    nothing (the caller has verified the archive; an interrupted earlier
    copy is left for the real restore to finish); it reports no datasets.
    """
    started = time.monotonic()
    if not check_only:
        verify_archive(archive, on_progress=on_progress)
    manifest = read_archive(archive).manifest
    if manifest.target != "minio":
        raise BackupError(f"{archive} is a {manifest.target} archive, not a minio one")
    selected = _select(manifest.datasets, scopes, archive)
    if into is not None:
        _check_bucket_name(into)
        if len(selected) != 1:
            raise ConfigError(
                f"--into names one bucket, but {len(selected)} datasets would be restored "
                f"({', '.join(d.name for d, _ in selected)}); pick one with --service"
            )
    client = store.client()
    # Before the targets are inspected: a copy into place that was cut short
    # is finished, so the target is judged by its complete new contents.
    earlier: list[str] = []
    if not check_only:
        with _errors(store, "finish the restores that were interrupted"):
            earlier = finish_interrupted(client)
    plans = []
    with _errors(store, "inspect the target buckets"):
        for dataset, want in selected:
            target = into or want.bucket
            plans.append(_Plan(dataset, want, target, _holds(client, target, want)))
    refused = [p for p in plans if p.holds > 0]
    if refused and not force:
        listing = "; ".join(
            f"{p.target} already holds objects"
            + (f" under {', '.join(p.want.prefixes)}" if p.want.prefixes else "")
            for p in refused
        )
        changed = f"Only this: {'; '.join(earlier)}." if earlier else "Nothing was changed."
        raise RestoreRefused(
            f"not restoring over existing data: {listing}. {changed} Restore into another "
            "bucket with --into NAME, or replace the objects with --force."
        )
    settings = _read_settings(archive)
    for _ in _read_index(archive):
        pass  # every line is checked before the first bucket is touched
    if check_only:
        return RestoreReport(archive, "minio", (), time.monotonic() - started)
    notes: dict[str, list[str]] = {p.dataset.name: [] for p in plans}
    if earlier:
        notes[plans[0].dataset.name].extend(earlier)
    staged = _stage(store, client, archive, plans, notes, on_progress)
    results = []
    for plan, (staging, counted) in zip(plans, staged, strict=True):
        results.append(_put_in_place(store, client, plan, staging, counted, settings, notes))
    return RestoreReport(archive, "minio", tuple(results), time.monotonic() - started)


def _stage(
    store: S3Config,
    client: Minio,
    archive: Path,
    plans: Sequence[_Plan],
    notes: dict[str, list[str]],
    on_progress: ProgressCallback | None,
) -> list[tuple[StagingPlan, tuple[int, int]]]:
    """Upload every selected object into staging buckets and count them there.

    Returns each plan's staging bucket with the (objects, bytes) it holds.
    """
    staged = [StagingPlan(new_staging_name(), p.target, p.want.prefixes, "staging") for p in plans]
    try:
        with _errors(store, "create the staging buckets"):
            for staging in staged:
                client.make_bucket(staging.staging)
                staging.write(client)
        scratch = [
            _Plan(p.dataset, p.want, s.staging, -1) for p, s in zip(plans, staged, strict=True)
        ]
        restored = _put_objects(store, client, archive, scratch, on_progress)
        for plan in scratch:
            _check(client, store, plan, restored[plan.dataset.name], [], skip=(PLAN_KEY,))
    except InfraError as exc:
        kept = ", ".join(p.target for p in plans)
        try:
            with _errors(store, "remove the staging buckets"):
                for staging in staged:
                    if client.bucket_exists(staging.staging):
                        remove_staging(client, staging.staging)
            left = "the partial staging copy was removed"
        except InfraError as cleanup:
            logger.warning("restore: could not remove the staging buckets: %s", cleanup)
            left = (
                f"the partial copy in {', '.join(s.staging for s in staged)} is removed by "
                "the next `inv restore`"
            )
        exc.args = (f"{exc}. {kept} was not changed; {left}.", *exc.args[1:])
        raise
    for plan, staging in zip(plans, staged, strict=True):
        notes[plan.dataset.name].append(f"staged and counted in {staging.staging} first")
    return [(s, restored[p.dataset.name]) for p, s in zip(plans, staged, strict=True)]


def _put_in_place(
    store: S3Config,
    client: Minio,
    plan: _Plan,
    staging: StagingPlan,
    counted: tuple[int, int],
    settings: dict[str, Any],
    notes: dict[str, list[str]],
) -> DatasetRestore:
    note = notes[plan.dataset.name]
    try:
        with _errors(store, f"copy the staged objects into {plan.target}"):
            if plan.holds < 0:
                client.make_bucket(plan.target)
                note.append(f"created bucket {plan.target}")
            if not plan.want.prefixes and plan.want.bucket in settings:
                _apply_settings(client, plan.want.bucket, plan.target, settings[plan.want.bucket])
            copied, deleted = copy_into_place(client, staging)
    except InfraError as exc:
        exc.args = (
            f"{exc}. {plan.target} may hold part of the new objects; the complete, checked copy "
            f"is in {staging.staging}, and the next `inv restore --target minio` finishes "
            "copying it into place",
            *exc.args[1:],
        )
        raise
    if deleted:
        logger.warning("restore: deleted %d objects from %s", deleted, plan.target)
        note.append(f"deleted {deleted} object(s) of {plan.target} that the archive does not hold")
    if copied != counted[0]:
        note.append(f"copied {copied} object(s) into place, {counted[0]} were staged")
    return _check(client, store, plan, counted, note)


def _check_bucket_name(name: str) -> None:
    from minio.helpers import check_bucket_name

    try:
        check_bucket_name(name, strict=True)
    except ValueError as exc:
        raise ConfigError(f"--into {name!r} is not a valid bucket name: {exc}") from exc


def _empty(client: Minio, bucket: str, want: BucketScope) -> int:
    from minio.deleteobjects import DeleteObject

    doomed = [
        DeleteObject(obj.object_name)
        for prefix in want.prefixes or ("",)
        for obj in client.list_objects(bucket, prefix=prefix or None, recursive=True)
        if not obj.is_dir and obj.object_name is not None
    ]
    for error in client.remove_objects(bucket, doomed):
        raise BackupError(f"cannot delete {bucket}/{error.name}: {error.code}: {error.message}")
    logger.info("deleted %d objects from %s", len(doomed), bucket)
    return len(doomed)


def _apply_settings(client: Minio, source: str, bucket: str, settings: dict[str, Any]) -> None:
    from minio.commonconfig import Tags
    from minio.lifecycleconfig import LifecycleConfig
    from minio.sseconfig import SSEConfig
    from minio.versioningconfig import VersioningConfig
    from minio.xml import unmarshal

    if settings.get("versioning"):
        client.set_bucket_versioning(bucket, VersioningConfig(settings["versioning"]))
    if settings.get("policy"):
        client.set_bucket_policy(bucket, _rename_policy(settings["policy"], source, bucket))
    if settings.get("lifecycle"):
        client.set_bucket_lifecycle(bucket, unmarshal(LifecycleConfig, settings["lifecycle"]))
    if settings.get("tags"):
        tags = Tags.new_bucket_tags()
        tags.update(settings["tags"])
        client.set_bucket_tags(bucket, tags)
    if settings.get("encryption"):
        client.set_bucket_encryption(bucket, unmarshal(SSEConfig, settings["encryption"]))


def _rename_policy(policy: str, source: str, bucket: str) -> str:
    """The policy with its resources moved from bucket ``source`` to ``bucket``."""
    if source == bucket:
        return policy
    pattern = re.compile(rf"^arn:aws:s3:::{re.escape(source)}(?=/|$)")

    def move(value: Any) -> Any:
        if isinstance(value, str):
            return pattern.sub(f"arn:aws:s3:::{bucket}", value)
        if isinstance(value, list):
            return [move(v) for v in value]
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        return value

    return json.dumps(move(json.loads(policy)))


def _put_objects(
    store: S3Config,
    client: Minio,
    archive: Path,
    plans: Sequence[_Plan],
    on_progress: ProgressCallback | None,
) -> dict[str, tuple[int, int]]:
    """Upload the selected objects in one pass over the tar; (objects, bytes) per dataset."""
    by_dataset = {p.dataset.name: p for p in plans}
    wanted: dict[str, dict[str, Any]] = {}
    for entry in _read_index(archive):
        plan = by_dataset.get(entry["dataset"])
        if plan is not None and plan.want.covers(entry["key"]):
            wanted[entry["member"]] = entry
    done = {name: (0, 0) for name in by_dataset}
    expected_bytes = sum(e["size"] for e in wanted.values())
    progress = Throttle(on_progress, "restore minio objects", expected_bytes)
    path = archive / OBJECTS_FILE
    try:
        _stream_members(store, client, archive, by_dataset, wanted, done, progress)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise BackupCorrupt(f"{path} cannot be read: {exc}", path=str(archive)) from exc
    if wanted:
        first = next(iter(wanted.values()))
        raise BackupCorrupt(
            f"{path} lacks {len(wanted)} object(s) the index lists, e.g. "
            f"{first['bucket']}/{first['key']}",
            path=str(archive),
        )
    progress.finish()
    return done


def _stream_members(
    store: S3Config,
    client: Minio,
    archive: Path,
    by_dataset: dict[str, _Plan],
    wanted: dict[str, dict[str, Any]],
    done: dict[str, tuple[int, int]],
    progress: Throttle,
) -> None:
    path = archive / OBJECTS_FILE
    with (
        path.open("rb") as raw,
        gzip.GzipFile(fileobj=raw, mode="rb") as gz,
        tarfile.open(fileobj=gz, mode="r|", bufsize=_TAR_BUFSIZE) as tar,
    ):
        for member in tar:
            if member.name not in wanted:
                continue
            entry = wanted.pop(member.name)
            plan = by_dataset[entry["dataset"]]
            data = tar.extractfile(member)
            if data is None or member.size != entry["size"]:
                raise BackupCorrupt(
                    f"{path}: member {member.name} ({entry['bucket']}/{entry['key']}) does not "
                    "match the index",
                    path=str(archive),
                )
            _put_one(store, client, plan.target, entry, data, progress, archive)
            objects, total = done[plan.dataset.name]
            done[plan.dataset.name] = (objects + 1, total + entry["size"])


def _put_one(
    store: S3Config,
    client: Minio,
    bucket: str,
    entry: dict[str, Any],
    data: IO[bytes],
    progress: Throttle,
    archive: Path,
) -> None:
    reader = _Hashing(data, progress)
    metadata = {**entry.get("metadata", {}), **entry.get("headers", {})}
    with _errors(store, f"upload {bucket}/{entry['key']}"):
        client.put_object(
            bucket,
            entry["key"],
            reader,  # type: ignore[arg-type]
            entry["size"],
            content_type=entry.get("content_type") or "application/octet-stream",
            metadata=metadata or None,
        )
    if reader.sha256.hexdigest() != entry["sha256"]:
        raise BackupCorrupt(
            f"object {entry['bucket']}/{entry['key']} in the archive has sha256 "
            f"{reader.sha256.hexdigest()}, the index says {entry['sha256']}",
            path=str(archive),
        )


def _check(
    client: Minio,
    store: S3Config,
    plan: _Plan,
    restored: tuple[int, int],
    notes: list[str],
    *,
    skip: Sequence[str] = (),
) -> DatasetRestore:
    with _errors(store, f"count the objects in {plan.target}"):
        objects, total = _count(client, plan.target, plan.want, skip)
    checks = (
        CountCheck("objects", restored[0], objects),
        CountCheck("bytes", restored[1], total),
    )
    bad = [c for c in checks if not c.ok]
    if bad:
        raise BackupError(
            f"bucket {plan.target} does not hold what the backup holds: "
            + ", ".join(f"{c.item}: {c.expected} expected, {c.actual} found" for c in bad)
        )
    return DatasetRestore(
        plan.want.name, plan.target, plan.holds > 0, checks, tuple(notes), restored[1]
    )


# -- drill ------------------------------------------------------------------


def drill_minio(
    store: S3Config, archive: Path, *, on_progress: ProgressCallback | None = None
) -> list[DatasetRestore]:
    """Restore each dataset of ``archive`` into a scratch bucket, compare, remove it."""
    verify_archive(archive, on_progress=on_progress)
    manifest = read_archive(archive).manifest
    if manifest.target != "minio":
        raise BackupError(f"{archive} is a {manifest.target} archive, not a minio one")
    client = store.client()
    results = []
    for dataset, want in _select(manifest.datasets, None, archive):
        scratch = f"infra-drill-{secrets.token_hex(4)}-{datetime.now(UTC):%H%M%S}"
        plan = _Plan(dataset, want, scratch, -1)
        with _errors(store, f"create scratch bucket {scratch}"):
            client.make_bucket(scratch)
        try:
            restored = _put_objects(store, client, archive, [plan], on_progress)
            results.append(_check(client, store, plan, restored[dataset.name], []))
        finally:
            with _errors(store, f"remove scratch bucket {scratch}"):
                _empty(client, scratch, BucketScope(scratch))
                client.remove_bucket(scratch)
    return results
