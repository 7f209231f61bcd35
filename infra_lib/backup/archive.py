"""Backup archives on disk: written atomically, listed, checked and pruned.

An archive is a directory named after its UTC start time and target::

    backups/infra/20261122T010203Z-postgres/
        manifest.json     what is inside: files with size and sha256, counts, versions
        verified.json     the result of the last restore drill (optional)
        001-user_db.dump  data files, each listed in manifest.json

Everything is written into ``<dest>/.tmp-<stamp>-<target>-<random>/`` first;
each file is fsynced as it is closed, ``manifest.json`` is written last, and
only then is the directory renamed to its final name. A rename is atomic, so
an interrupted backup leaves a ``.tmp-*`` directory that :func:`list_archives`
and :func:`latest` never see, and that the next backup removes once it is an
hour old. A directory without a valid ``manifest.json`` is not an archive.

Directories are 0700 and files 0600: a PostgreSQL archive holds password
verifiers and every archive holds the team's data.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from infra_lib.backup.model import DrillReport, ProgressCallback, Target
from infra_lib.backup.target import get_target, target_names
from infra_lib.errors import BackupCorrupt, BackupError, ConfigError
from infra_lib.stack.envfile import write_private_file

__all__ = [
    "ARCHIVE_NAME",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "VERIFIED_NAME",
    "ArchiveFile",
    "ArchiveInfo",
    "ArchiveManifest",
    "ArchiveWriter",
    "DatasetEntry",
    "FileEntry",
    "VerifiedMarker",
    "clean_stale_temp",
    "latest",
    "list_archives",
    "mark_verified",
    "parse_json",
    "parse_manifest",
    "prune",
    "read_archive",
    "verify_archive",
]

logger = logging.getLogger(__name__)

#: Bumped when a reader of this version could not restore a newer archive.
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
VERIFIED_NAME = "verified.json"
#: Files in an archive that are not data and so are not listed in the manifest.
_META_NAMES = frozenset({MANIFEST_NAME, VERIFIED_NAME})
#: Leftovers of an interrupted ``verified.json`` write; harmless, not data.
_VERIFIED_TMP_PREFIX = f".{VERIFIED_NAME}.tmp-"

_TEMP_PREFIX = ".tmp-"
#: A temporary directory younger than this may belong to a backup still running.
STALE_TEMP_SECONDS = 3600
_STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
#: ``<stamp>-<target>[-<n>]``; the target is any registered one (see backup.target).
ARCHIVE_NAME = re.compile(r"(?P<stamp>\d{8}T\d{6}Z)-(?P<target>[a-z][a-z0-9_]*?)(?:-(?P<seq>\d+))?")
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,199}")
_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: ``all`` or ``service:<service name>``; it is printed, so no markup or control codes.
_SCOPE = re.compile(r"all|service:[a-z0-9][a-z0-9_-]{0,62}")


# -- manifest ---------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Frozen):
    """One data file of an archive."""

    name: str
    size: int = Field(ge=0)
    sha256: str

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _FILE_NAME.fullmatch(value) or value in _META_NAMES:
            raise ValueError(f"{value!r} is not a plain data file name")
        return value

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _SHA256.fullmatch(value):
            raise ValueError("must be 64 lowercase hex digits")
        return value


class DatasetEntry(_Frozen):
    """One database, Redis DB or bucket (prefix) inside an archive.

    ``counts`` are what a restore must reproduce (rows per table, keys,
    objects); ``details`` hold what the target needs to recreate the
    dataset (owner, encoding, bucket settings, ...), checked against the
    target's schema in :mod:`infra_lib.backup.details` whenever a manifest
    is built or read.
    """

    name: str = Field(min_length=1, max_length=1024)
    files: tuple[str, ...] = Field(min_length=1)
    counts: dict[str, Annotated[StrictInt, Field(ge=0)]] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("files")
    @classmethod
    def _plain_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _FILE_NAME.fullmatch(name) or name in _META_NAMES:
                raise ValueError(f"{name!r} is not a plain data file name")
        if len(set(value)) != len(value):
            raise ValueError("names a file twice")
        return value


class ArchiveManifest(_Frozen):
    """The contents of ``manifest.json``."""

    format: int
    tool: str
    target: Target
    #: ``"all"``, or ``"service:<name>"`` when one service's data was backed up.
    scope: str
    created_at: datetime
    finished_at: datetime
    source: dict[str, str]
    server: dict[str, str]
    datasets: tuple[DatasetEntry, ...]
    files: tuple[FileEntry, ...]
    #: What was included and left out, in words and flags.
    included: dict[str, Any] = Field(default_factory=dict)

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        if value not in target_names():
            raise ValueError(f"{value[:40]!r} is not a backup target ({', '.join(target_names())})")
        return value

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        if not _SCOPE.fullmatch(value):
            raise ValueError(f"{value[:80]!r} is neither 'all' nor 'service:<name>'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # Every field below reaches a server during a restore; refuse here,
        # before anything can use it, rather than where it is used.
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError("files: a file is listed twice")
        seen: set[str] = set()
        for index, dataset in enumerate(self.datasets):
            if dataset.name in seen:
                raise ValueError(f"datasets.{index}: dataset {dataset.name!r} is listed twice")
            seen.add(dataset.name)
            unknown = [n for n in dataset.files if n not in names]
            if unknown:
                raise ValueError(
                    f"datasets.{index}.files: {unknown[0]!r} is not in the manifest's file list"
                )
            try:
                get_target(self.target).check_details(dataset.name, dataset.details)
            except ValidationError as exc:
                raise ValueError(
                    f"dataset {dataset.name!r}: "
                    + _problems(exc, prefix=f"datasets.{index}.details.")
                ) from None
            except ValueError as exc:
                raise ValueError(f"datasets.{index} ({dataset.name!r}): {exc}") from None
        return self

    def dataset(self, name: str) -> DatasetEntry | None:
        """The dataset called ``name``, if the archive holds it."""
        return next((d for d in self.datasets if d.name == name), None)

    @property
    def size(self) -> int:
        """Total bytes of the data files."""
        return sum(f.size for f in self.files)


class VerifiedMarker(_Frozen):
    """The contents of ``verified.json``: when a drill restored the archive, and how it went."""

    checked_at: datetime
    ok: bool
    seconds: float
    message: str
    tool: str


@dataclass(frozen=True, slots=True)
class ArchiveInfo:
    """A complete archive: where it is, its manifest, and its last drill result."""

    path: Path
    manifest: ArchiveManifest
    verified: VerifiedMarker | None

    @property
    def target(self) -> Target:
        return self.manifest.target

    @property
    def created_at(self) -> datetime:
        return self.manifest.created_at

    @property
    def scope(self) -> str:
        return self.manifest.scope

    @property
    def size(self) -> int:
        """Bytes of the data files (what the archive costs on disk, near enough)."""
        return self.manifest.size

    @property
    def name(self) -> str:
        return self.path.name


# -- writing ----------------------------------------------------------------


class _WriteFailed(BackupError):
    """The disk refused a write (full, read-only, quota); :class:`ArchiveWriter` restates it.

    Not an :class:`OSError`, so target code that treats ``OSError`` as a
    network failure (an S3 response cut short) lets it through.
    """

    def __init__(self, path: Path, exc: OSError) -> None:
        super().__init__(f"cannot write {path}: {exc.strerror or exc}")
        self.reason = exc.strerror or str(exc)


class ArchiveFile(io.RawIOBase):
    """A data file being written: 0600, hashed and counted as bytes go in.

    Usable as the ``fileobj`` of :class:`gzip.GzipFile` and :mod:`tarfile`.
    Closing it fsyncs the file and records its :class:`FileEntry`.
    """

    def __init__(self, path: Path, on_close: Any) -> None:
        super().__init__()
        self._path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise _WriteFailed(path, exc) from exc
        self._hash = hashlib.sha256()
        self._size = 0
        self._on_close = on_close

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._hash.update(view)
        written = 0
        try:
            while written < len(view):
                written += os.write(self._fd, view[written:])
        except OSError as exc:
            raise _WriteFailed(self._path, exc) from exc
        self._size += written
        return written

    def close(self) -> None:
        if self.closed:
            return
        try:
            os.fsync(self._fd)
        except OSError as exc:
            # A full disk may show only here, once delayed writes are flushed.
            raise _WriteFailed(self._path, exc) from exc
        finally:
            os.close(self._fd)
            super().close()
        self._on_close(
            FileEntry(name=self._path.name, size=self._size, sha256=self._hash.hexdigest())
        )

    def abandon(self) -> None:
        """Close without recording (the writer removes the whole directory anyway)."""
        if not self.closed:
            os.close(self._fd)
            super().close()


class ArchiveWriter:
    """Builds one archive in a temporary directory and publishes it atomically.

    Use as a context manager: files are added with :meth:`open`, the archive
    is published by :meth:`commit`; leaving the block without committing
    (an exception, a signal) removes the temporary directory.
    """

    def __init__(self, dest: Path, target: Target, *, now: datetime | None = None) -> None:
        get_target(target)  # ConfigError naming the known ones
        self.dest = dest
        self.target: Target = target
        self.created_at = (now or datetime.now(UTC)).astimezone(UTC)
        self.stamp = self.created_at.strftime(_STAMP_FORMAT)
        self._temp: Path | None = None
        self._files: dict[str, FileEntry] = {}
        self._open: list[ArchiveFile] = []
        self._names: set[str] = set()
        self._committed: Path | None = None

    def __enter__(self) -> Self:
        try:
            ensure_private_dir(self.dest)
            clean_stale_temp(self.dest)
            self._temp = Path(
                tempfile.mkdtemp(
                    prefix=f"{_TEMP_PREFIX}{self.stamp}-{self.target}-{secrets.token_hex(3)}-",
                    dir=self.dest,
                )
            )
            self._temp.chmod(0o700)
        except OSError as exc:
            self.discard()
            raise BackupError(
                f"cannot write the {self.target} backup into {self.dest}: "
                f"{exc.strerror or exc}. Nothing was written. Make the directory writable "
                "(or choose another with --to)."
            ) from exc
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._committed is not None:
            return
        temp = self._temp
        self.discard()
        if isinstance(exc, _WriteFailed | OSError):
            reason = exc.reason if isinstance(exc, _WriteFailed) else exc.strerror or str(exc)
            raise BackupError(
                f"cannot write the {self.target} backup into {self.dest}: {reason}. The "
                f"unfinished archive {temp} was removed; no archive was written and the server "
                "was not changed. Free space there (or choose another directory with --to) "
                "and back up again."
            ) from exc

    @property
    def temp_dir(self) -> Path:
        """Where the archive is being built (``.tmp-*``)."""
        if self._temp is None:
            raise RuntimeError("ArchiveWriter is used outside its `with` block")
        return self._temp

    def open(self, name: str) -> ArchiveFile:
        """A new data file ``name``; close it (``with``) to record its checksum."""
        if not _FILE_NAME.fullmatch(name) or name in _META_NAMES:
            raise ValueError(f"{name!r} is not a plain data file name")
        if name in self._names:
            raise ValueError(f"{name!r} is already in the archive")
        handle = ArchiveFile(self.temp_dir / name, self._record)
        self._names.add(name)
        self._open.append(handle)
        return handle

    def _record(self, entry: FileEntry) -> None:
        self._files[entry.name] = entry

    @property
    def files(self) -> Mapping[str, FileEntry]:
        """Files closed so far."""
        return dict(self._files)

    def commit(
        self,
        *,
        scope: str,
        source: Mapping[str, str],
        server: Mapping[str, str],
        datasets: Sequence[DatasetEntry],
        included: Mapping[str, Any] | None = None,
    ) -> ArchiveInfo:
        """Write ``manifest.json`` last, then rename the directory into place."""
        from infra_lib import __version__

        still_open = [h for h in self._open if not h.closed]
        if still_open:
            raise RuntimeError(f"close every file before commit ({len(still_open)} still open)")
        listed = {name for d in datasets for name in d.files}
        missing = listed - set(self._files)
        if missing:
            raise RuntimeError(f"datasets name files that were not written: {sorted(missing)}")
        manifest = ArchiveManifest(
            format=FORMAT_VERSION,
            tool=f"infra-lib {__version__}",
            target=self.target,
            scope=scope,
            created_at=self.created_at,
            finished_at=datetime.now(UTC),
            source=dict(source),
            server=dict(server),
            datasets=tuple(datasets),
            files=tuple(self._files[name] for name in sorted(self._files)),
            included=dict(included or {}),
        )
        temp = self.temp_dir
        try:
            _write_synced(temp / MANIFEST_NAME, manifest.model_dump_json(indent=2).encode() + b"\n")
            _fsync_dir(temp)
        except OSError as exc:
            raise _WriteFailed(temp / MANIFEST_NAME, exc) from exc
        final = self._publish(temp)
        self._committed = final
        logger.info("backup: wrote %s (%d files, %d bytes)", final, len(self._files), manifest.size)
        return ArchiveInfo(final, manifest, None)

    def _publish(self, temp: Path) -> Path:
        base = f"{self.stamp}-{self.target}"
        for attempt in range(1, 1000):
            final = self.dest / (base if attempt == 1 else f"{base}-{attempt}")
            try:
                # Refuses to replace a non-empty directory, so two backups in
                # the same second each get a name of their own.
                temp.rename(final)
            except OSError as exc:
                if final.exists():
                    continue
                raise BackupError(f"cannot move the finished archive into {final}: {exc}") from exc
            _fsync_dir(self.dest)
            return final
        raise BackupError(f"too many archives named {base}-* in {self.dest}")

    def discard(self) -> None:
        """Remove the temporary directory and everything in it."""
        for handle in self._open:
            handle.abandon()
        if self._temp is not None and self._temp.exists():
            shutil.rmtree(self._temp, ignore_errors=True)
            logger.info("backup: removed the unfinished archive %s", self._temp)


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) if missing and make it 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)


def clean_stale_temp(dest: Path, *, older_than: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Remove ``.tmp-*`` directories of interrupted backups older than ``older_than`` s."""
    removed: list[Path] = []
    if not dest.is_dir():
        return removed
    cutoff = time.time() - older_than
    for entry in dest.iterdir():
        if (
            entry.name.startswith(_TEMP_PREFIX)
            and entry.is_dir()
            and not entry.is_symlink()
            and entry.stat().st_mtime < cutoff
        ):
            shutil.rmtree(entry, ignore_errors=True)
            logger.info("backup: removed the leftover of an interrupted backup: %s", entry)
            removed.append(entry)
    return removed


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- reading ----------------------------------------------------------------


def read_archive(path: Path) -> ArchiveInfo:
    """The manifest (and drill marker) of the archive at ``path``, without checksums.

    Raises :class:`BackupCorrupt` when ``manifest.json`` is missing or invalid.
    """
    manifest_path = path / MANIFEST_NAME
    if not path.is_dir():
        raise BackupError(f"{path} is not a backup archive directory")
    if manifest_path.is_symlink():
        raise BackupCorrupt(
            f"{manifest_path} is a symbolic link; an archive's files are its own",
            path=str(path),
        )
    try:
        raw = manifest_path.read_bytes()
    except FileNotFoundError:
        raise BackupCorrupt(
            f"{path} has no {MANIFEST_NAME}: it is not a complete archive "
            "(an interrupted backup, or not an archive at all)",
            path=str(path),
        ) from None
    try:
        data = parse_json(raw)
    except ValueError as exc:
        raise BackupCorrupt(f"{manifest_path} is not valid JSON: {exc}", path=str(path)) from exc
    return ArchiveInfo(path, parse_manifest(data, where=str(manifest_path)), _read_verified(path))


def parse_manifest(data: Any, *, where: str) -> ArchiveManifest:
    """``data`` (parsed JSON) as a checked manifest; BackupCorrupt naming the bad field.

    ``where`` names the manifest in messages (a path or an s3:// URL).
    """
    version = data.get("format") if isinstance(data, dict) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise BackupError(
            f"{where} has archive format {version}; this infra-lib reads up to "
            f"{FORMAT_VERSION}. Restore it with a newer infra-lib."
        )
    try:
        return ArchiveManifest.model_validate(data)
    except ValidationError as exc:
        raise BackupCorrupt(
            f"{where} is invalid, so nothing was restored from it: {_problems(exc)}", path=where
        ) from exc


def _problems(exc: ValidationError, *, prefix: str = "") -> str:
    return "; ".join(
        f"{prefix}{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
        for err in exc.errors()[:5]
    )


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw: bytes) -> Any:
    """``raw`` as JSON, refusing what parsers disagree on: duplicate keys, NaN, Infinity.

    Raises ValueError (including for bytes that are not UTF-8).
    """
    try:
        return json.loads(
            raw.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constant
        )
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8: {exc}") from exc


def _read_verified(path: Path) -> VerifiedMarker | None:
    try:
        return VerifiedMarker.model_validate_json((path / VERIFIED_NAME).read_bytes())
    except FileNotFoundError:
        return None
    except ValidationError:
        logger.warning("backup: ignoring an unreadable %s in %s", VERIFIED_NAME, path)
        return None


def verify_archive(path: Path, *, on_progress: ProgressCallback | None = None) -> None:
    """Check that the archive at ``path`` is exactly what its manifest says.

    The manifest must parse; every listed file must be a regular file with
    the listed size and sha256; no other file may be present (except
    ``verified.json``). Raises :class:`BackupCorrupt` naming the first file
    that differs, with the expected and actual value.
    """
    info = read_archive(path)
    manifest = info.manifest
    listed = {f.name for f in manifest.files}
    for dataset in manifest.datasets:
        unknown = [name for name in dataset.files if name not in listed]
        if unknown:
            raise BackupCorrupt(
                f"{path}: dataset {dataset.name!r} names {unknown[0]!r}, which the manifest's "
                "file list does not have",
                path=str(path),
            )
    present = {entry.name: entry for entry in os.scandir(path)}
    extra = sorted(
        name
        for name in present
        if name not in listed
        and name not in _META_NAMES
        and not name.startswith(_VERIFIED_TMP_PREFIX)
    )
    if extra:
        raise BackupCorrupt(
            f"{path} holds {extra[0]!r}, which its manifest does not list "
            f"({len(extra)} unlisted file(s)); the archive was changed after it was written",
            path=str(path),
        )
    total = manifest.size
    done = 0
    for entry in manifest.files:
        found = present.get(entry.name)
        if found is None:
            raise BackupCorrupt(
                f"{path}: {entry.name} is missing (expected {entry.size} bytes)", path=str(path)
            )
        if found.is_symlink() or not found.is_file():
            raise BackupCorrupt(f"{path}: {entry.name} is not a regular file", path=str(path))
        size = found.stat().st_size
        if size != entry.size:
            raise BackupCorrupt(
                f"{path}: {entry.name} is {size} bytes, the manifest says {entry.size}",
                path=str(path),
            )
        digest = hashlib.sha256()
        with Path(found.path).open("rb", buffering=0) as handle:
            buf = bytearray(_CHUNK)
            view = memoryview(buf)
            while n := handle.readinto(buf):
                digest.update(view[:n])
                done += n
                if on_progress is not None:
                    on_progress(done, total, f"verify {entry.name}")
        if digest.hexdigest() != entry.sha256:
            raise BackupCorrupt(
                f"{path}: {entry.name} has sha256 {digest.hexdigest()}, the manifest says "
                f"{entry.sha256}; the file was altered or damaged",
                path=str(path),
            )


def list_archives(dest: Path, target: Target | None = None) -> list[ArchiveInfo]:
    """Complete archives under ``dest`` (of ``target`` if given), oldest first.

    Temporary ``.tmp-*`` directories and directories whose manifest is
    missing or invalid are skipped (the latter with a warning).
    """
    if not dest.is_dir():
        return []
    found: list[ArchiveInfo] = []
    for entry in dest.iterdir():
        match = ARCHIVE_NAME.fullmatch(entry.name)
        if match is None or not entry.is_dir() or entry.is_symlink():
            continue
        if target is not None and match["target"] != target:
            continue
        if match["target"] not in target_names():
            continue
        try:
            info = read_archive(entry)
        except BackupError as exc:
            logger.warning("backup: skipping %s: %s", entry, exc)
            continue
        if info.manifest.target != match["target"]:
            logger.warning("backup: skipping %s: its manifest is for %s", entry, info.target)
            continue
        found.append(info)
    found.sort(key=lambda a: (a.created_at, _sequence(a.path.name), a.path.name))
    return found


def _sequence(name: str) -> int:
    match = ARCHIVE_NAME.fullmatch(name)
    return int(match["seq"]) if match and match["seq"] else 1


def latest(dest: Path, target: Target, *, dataset: str | None = None) -> ArchiveInfo | None:
    """The newest complete archive of ``target`` (holding ``dataset`` if given)."""
    for info in reversed(list_archives(dest, target)):
        if dataset is None or info.manifest.dataset(dataset) is not None:
            return info
    return None


def prune(dest: Path, target: Target, keep: int, *, scope: str | None = None) -> list[Path]:
    """Delete all but the ``keep`` newest complete archives of ``target``.

    With ``scope`` only archives of that scope count and are deleted, so a
    service's own backups do not push out full ones. Temporary and damaged
    directories are never touched here. Returns the removed paths.
    """
    if isinstance(keep, bool) or keep < 1:
        raise ConfigError(f"--keep must be at least 1, not {keep!r}")
    archives = [a for a in list_archives(dest, target) if scope is None or a.scope == scope]
    doomed = archives[: max(0, len(archives) - keep)]
    for info in doomed:
        shutil.rmtree(info.path)
        logger.info("backup: pruned %s", info.path)
    return [info.path for info in doomed]


def mark_verified(report: DrillReport) -> VerifiedMarker:
    """Record a drill's outcome as ``verified.json`` in the archive."""
    from infra_lib import __version__

    marker = VerifiedMarker(
        checked_at=report.checked_at,
        ok=report.ok,
        seconds=round(report.seconds, 3),
        message=report.message,
        tool=f"infra-lib {__version__}",
    )
    write_private_file(report.archive / VERIFIED_NAME, marker.model_dump_json(indent=2) + "\n")
    return marker
