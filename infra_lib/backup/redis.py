"""Redis backup and restore, key by key, with ``DUMP`` and ``RESTORE``.

**Why logical, not an RDB snapshot.** ``BGSAVE`` and copying ``dump.rdb``
out would give one point-in-time image of the whole server, but it needs
the container's file system (managed Redis such as ElastiCache forbids
``BGSAVE`` and has no file to copy), it cannot be restored into another DB
number, and restoring it means replacing the server's data file and
restarting Redis, taking every service down with it. A logical backup
(``SCAN``, then ``DUMP`` + ``PTTL`` for each key, pipelined) works against any
server we can log in to, backs up and restores one service's DB while the
others keep running, restores into a spare DB for ``--into`` and for drills,
and ``DUMP`` payloads keep every data type exactly: strings, hashes, lists,
sets, sorted sets, streams with their consumer groups.

**Its limit: not a point-in-time copy.** Keys are read in batches while
services keep writing, so two keys changed together may be captured one
before and one after the change, and keys written during the scan may be
missing. For the data kept in Redis here (caches, sessions, presence, room
state) that is acceptable; anything that must be consistent belongs in
PostgreSQL. A ``DUMP`` payload can be restored by the same or a newer Redis
major version only.

**Expiry.** Each key's expiry is stored as an absolute time (server clock
plus ``PTTL``) and restored with ``RESTORE ... ABSTTL``: a refresh token that
expired while the archive sat on disk stays expired, and one with an hour
left still has that hour, less the time since the backup.

File format (``db<N>.keys.gz``, gzip): a magic line, then per key a record
of key length (u32), absolute expiry in ms or -1 (i64), payload length
(u32), key, ``DUMP`` payload; all big-endian.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import secrets
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
import redis.exceptions

from infra_lib.backup.archive import (
    ArchiveInfo,
    ArchiveWriter,
    DatasetEntry,
    read_archive,
    verify_archive,
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
    from infra_lib.redis.config import RedisConfig

__all__ = [
    "SCRATCH_MARKER",
    "backup_redis",
    "clean_scratch_dbs",
    "dataset_name",
    "drill_redis",
    "find_scratch_db",
    "restore_redis",
]

logger = logging.getLogger(__name__)

MAGIC = b"INFRA-REDIS-KEYS 1\n"
_HEADER = struct.Struct(">IqI")
#: Keys per SCAN page and per pipeline round trip.
BATCH = 1000
#: Bytes of RESTORE payloads buffered before a pipeline is sent.
_PIPELINE_BYTES = 8 << 20
#: Payloads are partly LZF-compressed already; level 6 still shrinks keys and
#: small values well, and Redis data is bounded by maxmemory.
_GZIP_LEVEL = 6


# The first byte of a DUMP payload is the RDB object type, which tells the
# data type without a TYPE round trip per key.
_RDB_KINDS = {
    **dict.fromkeys((0,), "string"),
    **dict.fromkeys((1, 10, 14, 18), "list"),
    **dict.fromkeys((2, 11, 20), "set"),
    **dict.fromkeys((3, 5, 12, 17), "zset"),
    **dict.fromkeys((4, 9, 13, 16), "hash"),
    **dict.fromkeys((6, 7), "module"),
    **dict.fromkeys((15, 19, 21), "stream"),
}


def _kind(payload: bytes) -> str:
    return _RDB_KINDS.get(payload[0], f"rdb-type-{payload[0]}") if payload else "empty"


def dataset_name(db: int) -> str:
    """How a Redis DB is named in an archive (``db3``)."""
    return f"db{db}"


@contextmanager
def _errors(config: RedisConfig, action: str) -> Iterator[None]:
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise ServiceUnavailable(
            f"Redis at {config.address} stopped answering while trying to {action}: {exc}",
            service="redis",
        ) from exc
    except redis.exceptions.RedisError as exc:
        raise BackupError(f"Redis at {config.address} refused to {action}: {exc}") from exc


def _server_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


# -- backup -----------------------------------------------------------------


def backup_redis(
    config: RedisConfig,
    dest: Path,
    *,
    dbs: Sequence[int] | None = None,
    scope: str = "all",
    on_progress: ProgressCallback | None = None,
) -> ArchiveInfo:
    """Write every key of ``dbs`` (every non-empty DB by default) to a new archive."""
    with config.client(0) as client, _errors(config, "describe the server"):
        info: dict[str, Any] = client.info("server")
        keyspace: dict[str, Any] = client.info("keyspace")
    if dbs is None:
        wanted = [
            db
            for db in sorted(int(name[2:]) for name in keyspace if name.startswith("db"))
            if not _is_scratch(config, db)
        ]
    else:
        wanted = sorted(set(dbs))
    with ArchiveWriter(dest, "redis") as writer:
        datasets = [_dump_db(config, writer, db, on_progress) for db in wanted]
        return writer.commit(
            scope=scope,
            source={"host": config.host, "port": str(config.port)},
            server={"version": str(info.get("redis_version", "?"))},
            datasets=datasets,
            included={
                "dbs": wanted,
                "method": "SCAN + DUMP/PTTL per key (logical; not a point-in-time snapshot)",
                "expiry": "absolute, restored with RESTORE ABSTTL",
            },
        )


def _is_scratch(config: RedisConfig, db: int) -> bool:
    """Whether ``db`` is a restore's scratch DB (left out of backups: not data)."""
    with config.client(db) as client, _errors(config, f"inspect DB {db}"):
        if client.exists(SCRATCH_MARKER):
            logger.info("backup: leaving out redis DB %d, a restore's scratch DB", db)
            return True
    return False


def _dump_db(
    config: RedisConfig, writer: ArchiveWriter, db: int, on_progress: ProgressCallback | None
) -> DatasetEntry:
    file_name = f"db{db}.keys.gz"
    counts: dict[str, int] = {"keys": 0}
    expiring = 0
    # SCAN may return a key twice; 8-byte digests keep the memory per key small.
    seen: set[bytes] = set()
    progress = Throttle(on_progress, f"redis db{db}")
    with (
        config.client(db) as client,
        _errors(config, f"read the keys of DB {db}"),
        writer.open(file_name) as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=_GZIP_LEVEL, mtime=0) as out,
    ):
        out.write(MAGIC)
        cursor = 0
        while True:
            cursor, keys = client.scan(cursor, count=BATCH)
            fresh = []
            for key in keys:
                digest = hashlib.blake2b(key, digest_size=8).digest()
                if digest not in seen:
                    seen.add(digest)
                    fresh.append(key)
            if fresh:
                pipe = client.pipeline(transaction=False)
                pipe.time()
                for key in fresh:
                    pipe.dump(key)
                    pipe.pttl(key)
                replies = pipe.execute()
                seconds, micros = replies[0]
                now_ms = int(seconds) * 1000 + int(micros) // 1000
                for index, key in enumerate(fresh):
                    payload, pttl = replies[1 + 2 * index : 3 + 2 * index]
                    if payload is None or pttl == -2:
                        continue  # deleted or expired since SCAN saw it
                    expire_at = now_ms + int(pttl) if pttl >= 0 else -1
                    out.write(
                        b"".join((_HEADER.pack(len(key), expire_at, len(payload)), key, payload))
                    )
                    name = _kind(payload)
                    counts[name] = counts.get(name, 0) + 1
                    counts["keys"] += 1
                    expiring += expire_at != -1
                    progress.add(len(key) + len(payload) + _HEADER.size)
            if cursor == 0:
                break
    progress.finish()
    logger.info("backup: redis db%d: %d keys", db, counts["keys"])
    return DatasetEntry(
        name=dataset_name(db),
        files=(file_name,),
        counts=counts,
        details={"db": db, "expiring": expiring},
    )


# -- restore ----------------------------------------------------------------


def _records(
    handle: gzip.GzipFile, path: Path, archive: Path
) -> Iterator[tuple[bytes, int, bytes]]:
    try:
        if handle.read(len(MAGIC)) != MAGIC:
            raise BackupCorrupt(f"{path} is not a Redis key file of this format", path=str(archive))
        while True:
            header = handle.read(_HEADER.size)
            if not header:
                return
            key_len, expire_at, payload_len = _HEADER.unpack(header)
            key = handle.read(key_len)
            payload = handle.read(payload_len)
            if len(key) != key_len or len(payload) != payload_len:
                raise BackupCorrupt(f"{path} ends in the middle of a record", path=str(archive))
            yield key, expire_at, payload
    except (OSError, EOFError, zlib.error, struct.error) as exc:
        raise BackupCorrupt(f"{path} cannot be read: {exc}", path=str(archive)) from exc


@dataclass(frozen=True, slots=True)
class _Plan:
    dataset: DatasetEntry
    target: int
    holds: int


def restore_redis(
    config: RedisConfig,
    archive: Path,
    *,
    dbs: Sequence[int] | None = None,
    into: int | None = None,
    force: bool = False,
    check_only: bool = False,
    on_progress: ProgressCallback | None = None,
) -> RestoreReport:
    """Restore ``dbs`` (every DB in the archive by default) from ``archive``.

    The archive is verified first. A target DB holding keys is refused with
    :class:`RestoreRefused` unless ``force``, which replaces that DB's keys
    (and only that DB's). ``into`` restores the single selected DB into
    another DB number.

    Each DB is restored into a scratch DB first (claimed in the DB registry
    so no service is handed it, and marked with :data:`SCRATCH_MARKER`),
    its key count checked, and only then exchanged with the target by one
    ``SWAPDB`` (atomic; Redis 4.0 or newer); the old keys, now in the
    scratch DB, are flushed. An interrupted restore leaves the target as it
    was, and the next restore removes the leftover scratch DB. The server
    needs memory for both copies of the DB at once: under ``allkeys-lru``
    keys evicted meanwhile fail the count check, and the target is kept.

    ``check_only`` makes only the checks that can refuse and changes
    nothing (the caller has verified the archive); it reports no datasets.
    """
    started = time.monotonic()
    if not check_only:
        verify_archive(archive, on_progress=on_progress)
    manifest = read_archive(archive).manifest
    if manifest.target != "redis":
        raise BackupError(f"{archive} is a {manifest.target} archive, not a redis one")
    chosen = _choose(manifest.datasets, dbs, archive)
    if into is not None:
        if isinstance(into, bool) or into < 0:
            raise ConfigError(f"--into must be a Redis DB number, not {into!r}")
        if len(chosen) != 1:
            raise ConfigError(
                f"--into names one DB, but {len(chosen)} would be restored "
                f"({', '.join(d.name for d in chosen)}); pick one with --service"
            )
    plans = []
    for dataset in chosen:
        target = into if into is not None else int(dataset.details["db"])
        with config.client(target) as client, _errors(config, f"inspect DB {target}"):
            plans.append(_Plan(dataset, target, int(client.dbsize())))
    refused = [p for p in plans if p.holds]
    if refused and not force:
        listing = "; ".join(f"DB {p.target} holds {p.holds} key(s)" for p in refused)
        raise RestoreRefused(
            f"not restoring over existing data: {listing}. Nothing was changed. Restore into "
            "another DB with --into N, or replace the keys with --force."
        )
    if check_only:
        return RestoreReport(archive, "redis", (), time.monotonic() - started)
    results = _restore_swapped(config, archive, plans, force=force, on_progress=on_progress)
    return RestoreReport(archive, "redis", tuple(results), time.monotonic() - started)


def _choose(
    datasets: Sequence[DatasetEntry], dbs: Sequence[int] | None, archive: Path
) -> list[DatasetEntry]:
    if dbs is None:
        return list(datasets)
    by_name = {d.name: d for d in datasets}
    missing = [db for db in dbs if dataset_name(db) not in by_name]
    if missing:
        raise BackupError(
            f"{archive} does not hold Redis DB(s) {', '.join(map(str, missing))}; it holds "
            f"{', '.join(by_name) or 'nothing'}"
        )
    return [by_name[dataset_name(db)] for db in dbs]


def _restore_db(
    config: RedisConfig,
    archive: Path,
    plan: _Plan,
    *,
    flush: bool,
    on_progress: ProgressCallback | None,
    marker: bool = False,
) -> DatasetRestore:
    dataset = plan.dataset
    path = archive / dataset.files[0]
    notes: list[str] = []
    restored = expired = 0
    expiries: list[int] = []
    progress = Throttle(on_progress, f"restore redis {dataset.name}", path.stat().st_size)
    with config.client(plan.target) as client, _errors(config, f"restore into DB {plan.target}"):
        if plan.holds and flush:
            client.flushdb()
            notes.append(f"emptied DB {plan.target} ({plan.holds} keys) with FLUSHDB first")
            logger.warning("restore: flushed redis DB %d", plan.target)
        now_ms = _server_ms(client)
        pipe = client.pipeline(transaction=False)
        pending: list[bytes] = []
        buffered = 0
        with path.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as handle:
            for key, expire_at, payload in _records(handle, path, archive):
                if expire_at != -1 and expire_at <= now_ms:
                    expired += 1
                    continue
                if expire_at == -1:
                    pipe.restore(key, 0, payload, replace=True)
                else:
                    pipe.restore(key, expire_at, payload, replace=True, absttl=True)
                    expiries.append(expire_at)
                pending.append(key)
                buffered += len(payload) + len(key)
                if len(pending) >= BATCH or buffered >= _PIPELINE_BYTES:
                    restored += _send(pipe, pending, plan.target)
                    progress.add(raw.tell() - progress.done)
                    pending, buffered = [], 0
            if pending:
                restored += _send(pipe, pending, plan.target)
            progress.add(raw.tell() - progress.done)
        progress.finish()
        after_ms = _server_ms(client)
        actual = int(client.dbsize()) - (1 if marker and client.exists(SCRATCH_MARKER) else 0)
    may_have_expired = sum(1 for e in expiries if e <= after_ms)
    if expired:
        notes.append(f"{expired} key(s) had expired since the backup and were not restored")
    if actual > restored:
        notes.append(f"DB {plan.target} holds {actual - restored} key(s) more than were restored")
    checks = (
        CountCheck("keys", dataset.counts.get("keys", 0), restored + expired),
        CountCheck("keys in the DB", restored, min(actual, restored), tolerance=may_have_expired),
    )
    bad = [c for c in checks if not c.ok]
    if bad:
        raise BackupError(
            f"Redis DB {plan.target} does not hold what {dataset.name} of the backup holds: "
            + ", ".join(f"{c.item}: {c.expected} expected, {c.actual} found" for c in bad)
            + ". Keys may have been evicted (maxmemory) or deleted while restoring."
        )
    return DatasetRestore(
        dataset.name,
        f"db{plan.target}",
        bool(plan.holds and flush),
        checks,
        tuple(notes),
        path.stat().st_size,
    )


# -- restore through a scratch DB --------------------------------------------

#: Key set in a scratch DB while a restore uses it; its value says by whom.
SCRATCH_MARKER = b"infra:restore-scratch"
#: Registry entries that reserve a scratch DB; the suffix tells runs apart.
SCRATCH_CLAIM_PREFIX = "infra-restore-scratch-"


def _restore_swapped(
    config: RedisConfig,
    archive: Path,
    plans: Sequence[_Plan],
    *,
    force: bool,
    on_progress: ProgressCallback | None,
) -> list[DatasetRestore]:
    from infra_lib.redis.allocator import RedisDbAllocator

    with RedisDbAllocator(config) as allocator:
        cleaned = clean_scratch_dbs(config, allocator)
        registry_db = allocator.registry_db
        # The registry DB goes last: swapping it in replaces the hash that
        # holds this run's claim on the scratch DB.
        ordered = sorted(plans, key=lambda p: p.target == registry_db)
        claim, scratch = _claim_scratch(config, allocator, avoid=[p.target for p in plans])
        results: dict[int, DatasetRestore] = {}
        try:
            for plan in ordered:
                results[plan.target] = _restore_via(
                    config, archive, plan, scratch, force, on_progress
                )
        except InfraError as exc:
            done = ", ".join(f"DB {db}" for db in results) or "no DB"
            _restate(exc, f"{done} of this archive was restored before that")
            _release_scratch(config, allocator, claim, scratch, failing=True)
            raise
        _release_scratch(config, allocator, claim, scratch, failing=False)
    out = [results[p.target] for p in plans]
    if cleaned:
        out[0] = _with_note(out[0], f"emptied leftover scratch DB(s) {cleaned} of an earlier run")
    return out


def _restate(exc: InfraError, more: str) -> None:
    """Add what state the restore left to ``exc``'s message, keeping its type."""
    exc.args = (f"{exc}. {more}.", *exc.args[1:])


def _release_scratch(
    config: RedisConfig, allocator: Any, claim: str, scratch: int, *, failing: bool
) -> None:
    try:
        with _errors(config, f"empty scratch DB {scratch}"):
            with config.client(scratch) as client:
                client.flushdb()
            allocator.release(claim)
    except InfraError as exc:
        if not failing:
            raise
        # The restore's own error is the one to report; the next run cleans up.
        logger.warning("restore: could not empty scratch redis DB %d: %s", scratch, exc)


def _with_note(result: DatasetRestore, note: str) -> DatasetRestore:
    return DatasetRestore(
        result.dataset,
        result.into,
        result.replaced,
        result.checks,
        (*result.notes, note),
        result.bytes_read,
    )


def _claim_scratch(config: RedisConfig, allocator: Any, *, avoid: Sequence[int]) -> tuple[str, int]:
    """Reserve an empty DB no service holds, in the registry, and mark it."""
    from infra_lib.errors import AllocationConflict

    claim = f"{SCRATCH_CLAIM_PREFIX}{secrets.token_hex(4)}"
    tried: list[int] = [*avoid]
    for _ in range(8):
        db = find_scratch_db(config, avoid=tried)
        tried.append(db)
        try:
            with _errors(config, f"reserve scratch DB {db}"):
                allocator.allocate(claim, db=db)
        except AllocationConflict:
            continue  # a service took it meanwhile
        with config.client(db) as client, _errors(config, f"mark scratch DB {db}"):
            # SETNX: a DB that received keys since it was found empty is not taken.
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            if client.dbsize() == 0 and client.set(SCRATCH_MARKER, f"{claim} {stamp}", nx=True):
                logger.info("restore: using redis DB %d as scratch (%s)", db, claim)
                return claim, db
            allocator.release(claim)
    raise BackupError(
        f"Redis at {config.address}: no empty DB could be reserved as scratch for the restore; "
        "nothing was changed"
    )


def clean_scratch_dbs(config: RedisConfig, allocator: Any = None) -> list[int]:
    """Empty the scratch DBs an interrupted restore left behind; their numbers.

    A leftover is a DB holding :data:`SCRATCH_MARKER` (partial new keys, or
    the old keys after the swap), and its registry claim is released. If
    another restore is running meanwhile, its count check or its watched
    ``SWAPDB`` fails and its target stays as it was.
    """
    from infra_lib.redis.allocator import RedisDbAllocator

    registry = allocator if allocator is not None else RedisDbAllocator(config)
    try:
        cleaned = []
        with _errors(config, "look for leftover scratch DBs"):
            claims = {
                name: db
                for name, db in registry.list().items()
                if name.startswith(SCRATCH_CLAIM_PREFIX)
            }
            for db in range(registry.databases):
                if db == registry.registry_db:
                    continue
                with config.client(db) as client:
                    if client.exists(SCRATCH_MARKER):
                        client.flushdb()
                        cleaned.append(db)
                        logger.warning("restore: emptied leftover scratch redis DB %d", db)
            for name, db in claims.items():
                with config.client(db) as client:
                    if db in cleaned or not client.dbsize():
                        registry.release(name)
        return cleaned
    finally:
        if allocator is None:
            registry.close()


def _restore_via(
    config: RedisConfig,
    archive: Path,
    plan: _Plan,
    scratch: int,
    force: bool,
    on_progress: ProgressCallback | None,
) -> DatasetRestore:
    try:
        restored = _restore_db(
            config,
            archive,
            _Plan(plan.dataset, scratch, 0),
            flush=False,
            on_progress=on_progress,
            marker=True,
        )
        old = _swap(config, plan, scratch, force=force)
    except ServiceUnavailable as exc:
        _restate(
            exc,
            f"DB {plan.target} was not changed; the partial copy is in scratch DB {scratch} "
            f"(marked {SCRATCH_MARKER.decode()}), which the next `inv restore` empties",
        )
        raise
    except InfraError as exc:
        _restate(exc, f"DB {plan.target} was not changed; the partial copy is removed")
        raise
    notes = list(restored.notes)
    if old:
        notes.append(f"replaced the {old} key(s) DB {plan.target} held (SWAPDB, then flushed)")
        logger.warning("restore: replaced the %d keys of redis DB %d", old, plan.target)
    return DatasetRestore(
        restored.dataset,
        f"db{plan.target}",
        bool(old),
        restored.checks,
        tuple(notes),
        restored.bytes_read,
    )


def _swap(config: RedisConfig, plan: _Plan, scratch: int, *, force: bool) -> int:
    """Exchange the checked scratch DB with the target; how many keys the target held."""
    gone = f"scratch DB {scratch} was emptied by another run mid-restore"
    with (
        config.client(scratch) as client,
        _errors(config, f"swap DB {scratch} into DB {plan.target}"),
    ):
        with client.pipeline(transaction=True) as pipe:
            # FLUSHDB by another run's cleanup touches the watched key: EXEC aborts.
            pipe.watch(SCRATCH_MARKER)
            if not pipe.exists(SCRATCH_MARKER):
                raise BackupError(gone)
            with config.client(plan.target) as target:
                holds = int(target.dbsize())
            if holds and not force:
                raise RestoreRefused(
                    f"DB {plan.target} received {holds} key(s) while the restore ran; not "
                    "replacing them. Use --force to replace them"
                )
            pipe.multi()
            pipe.delete(SCRATCH_MARKER)
            pipe.swapdb(plan.target, scratch)
            # The connection still selects the scratch number, now holding the old keys.
            pipe.set(SCRATCH_MARKER, b"old keys of a finished restore")
            try:
                pipe.execute()
            except redis.exceptions.WatchError as exc:
                raise BackupError(gone) from exc
        client.flushdb()
        client.set(SCRATCH_MARKER, b"reserved by a running restore")
    return holds


def _send(pipe: Any, keys: list[bytes], db: int) -> int:
    replies = pipe.execute(raise_on_error=False)
    for key, reply in zip(keys, replies, strict=True):
        if isinstance(reply, Exception):
            raise BackupError(
                f"Redis refused to restore key {key[:80]!r} into DB {db}: {reply}. "
                "(A DUMP payload restores only on the same or a newer Redis version.)"
            )
    return len(keys)


# -- drill ------------------------------------------------------------------


def find_scratch_db(config: RedisConfig, *, avoid: Sequence[int] = ()) -> int:
    """The highest-numbered empty DB that no service holds and is not the registry's."""
    from infra_lib.redis.allocator import RedisDbAllocator

    with RedisDbAllocator(config) as allocator:
        taken = set(allocator.list().values()) | {allocator.registry_db, *avoid}
        databases = allocator.databases
    for db in range(databases - 1, -1, -1):
        if db in taken:
            continue
        with config.client(db) as client, _errors(config, f"inspect DB {db}"):
            if client.dbsize() == 0:
                return db
    raise BackupError(
        f"Redis at {config.address} has no empty DB that no service holds; a restore (or "
        "a drill) needs one as scratch space. Nothing was changed. Raise REDIS_DATABASES, "
        "or pass a scratch DB to the drill explicitly."
    )


def drill_redis(
    config: RedisConfig,
    archive: Path,
    *,
    scratch_db: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> list[DatasetRestore]:
    """Restore every DB of ``archive`` into an empty scratch DB in turn, compare, empty it."""
    verify_archive(archive, on_progress=on_progress)
    manifest = read_archive(archive).manifest
    if manifest.target != "redis":
        raise BackupError(f"{archive} is a {manifest.target} archive, not a redis one")
    db = find_scratch_db(config) if scratch_db is None else scratch_db
    results = []
    for dataset in manifest.datasets:
        with config.client(db) as client, _errors(config, f"inspect DB {db}"):
            if client.dbsize():
                raise BackupError(f"scratch DB {db} is not empty; a drill will not touch it")
        try:
            results.append(
                _restore_db(
                    config, archive, _Plan(dataset, db, 0), flush=False, on_progress=on_progress
                )
            )
        finally:
            with config.client(db) as client, _errors(config, f"empty scratch DB {db}"):
                client.flushdb()
    return results
