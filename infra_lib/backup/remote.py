"""Archives kept in an S3 bucket: uploaded, listed, pruned and downloaded for a restore.

A remote archive mirrors the local directory, one object per file::

    s3://team-backups/infra/20261122T010203Z-redis/manifest.json
    s3://team-backups/infra/20261122T010203Z-redis/001-db0.jsonl.gz

S3 has no atomic rename, so ``manifest.json`` plays its part: it is uploaded
last, after every data file is in place and its size checked, and an archive
without one is not listed, not picked as latest and not pruned. A failed
upload deletes what it wrote, manifest first.

Restores never read from the bucket directly: the archive is downloaded into
a private directory and goes through the local restore path, which checks
every sha256 before anything is changed.

With a passphrase each data file is encrypted as it is uploaded (see
:mod:`infra_lib.backup.crypto`) and decrypted as it is downloaded. The
manifest stays readable, so archives can be listed without the passphrase;
it gains an ``encryption`` block with the public key-derivation parameters
and, last, a MAC under a key derived from the passphrase, while its sizes
and sha256 stay those of the plaintext, which the local restore path checks
after decryption as for any archive.

**Threat model.** Whoever can write to the bucket (or to a local backup
directory) can change an archive, so everything read back is untrusted
until checked:

- *Encrypted remote archives* are authenticated end to end. Before anything
  in the manifest is used, its MAC is checked over its exact bytes and the
  archive's name; every data file is AES-GCM with its name and chunk
  positions bound in. Without the passphrase nobody can change a byte, add
  or drop a file, or rename the archive unnoticed, and a manifest that
  drops its encryption (a downgrade) is refused when a passphrase is given,
  and whenever the stored files are encrypted. What remains possible is
  deleting archives, or putting back an older authentic archive (a
  rollback): the restore then restores that older data, with its name and
  date.
- *Unencrypted archives* (every local one, and remote ones made without
  ``--encrypt``) have no secret, so their manifests are validated but not
  authenticated. Every field is parsed against a schema before a server
  sees it (names quoted, privileges and role attributes from an
  allow-list, DB numbers in range, valid bucket names, file names inside
  the archive), so a malformed or hand-edited manifest cannot turn into
  SQL or a privileged role. But whoever can rewrite an unencrypted archive
  can also rewrite its dump, which ``pg_restore`` runs as the admin role:
  such an archive is exactly as trustworthy as the place it is kept.
  Encrypt what leaves the machine.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeGuard, cast

from pydantic import ValidationError

from infra_lib.backup.archive import (
    ARCHIVE_NAME,
    MANIFEST_NAME,
    ArchiveInfo,
    ArchiveManifest,
    ensure_private_dir,
    parse_json,
    parse_manifest,
)
from infra_lib.backup.crypto import (
    MAC_MEMBER,
    MAGIC,
    ArchiveKey,
    EncryptingReader,
    EncryptionInfo,
    Passphrase,
    decrypt_stream,
    encrypted_size,
    open_manifest,
    seal_manifest,
)
from infra_lib.backup.model import ProgressCallback, Target
from infra_lib.backup.streams import Throttle
from infra_lib.backup.target import target_names
from infra_lib.errors import (
    BackupCorrupt,
    BackupError,
    ConfigError,
    InfraError,
    RestoreRefused,
    ServiceUnavailable,
)
from infra_lib.storage.keys import check_bucket_name, check_segment

if TYPE_CHECKING:
    from minio import Minio

    from infra_lib.stack.settings import StackSettings
    from infra_lib.storage.config import S3Config

__all__ = [
    "RemoteArchive",
    "RemoteStore",
    "S3Location",
    "download_archive",
    "find_remote",
    "is_s3_url",
    "list_remote",
    "parse_s3_url",
    "prune_remote",
    "remote_config",
    "split_archive_url",
    "upload_archive",
]

logger = logging.getLogger(__name__)

_SCHEME = "s3://"
_CHUNK = 1 << 20
#: The key a remote manifest adds to the local one; local manifests never have it.
_ENCRYPTION = "encryption"
#: Environment variables that point backups at another S3 server than the stack's MinIO.
ENV_ENDPOINT = "BACKUP_S3_ENDPOINT"
ENV_ACCESS_KEY = "BACKUP_S3_ACCESS_KEY_ID"
ENV_SECRET_KEY = "BACKUP_S3_SECRET_ACCESS_KEY"  # noqa: S105 - a variable name, not a secret
ENV_REGION = "BACKUP_S3_REGION"


@dataclass(frozen=True, slots=True)
class S3Location:
    """A bucket and a key prefix (``""`` or ``a/b``, without slashes at either end)."""

    bucket: str
    prefix: str = ""

    @property
    def url(self) -> str:
        return f"{_SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{_SCHEME}{self.bucket}"

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` under the prefix."""
        return "/".join(p for p in (self.prefix, *parts) if p)

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True, slots=True)
class RemoteStore:
    """Where remote archives go: the server's settings and the bucket/prefix on it."""

    config: S3Config
    location: S3Location


@dataclass(frozen=True, slots=True)
class RemoteArchive:
    """A complete archive in a bucket (one whose ``manifest.json`` is in place)."""

    location: S3Location
    name: str
    manifest: ArchiveManifest
    #: How its data files were encrypted; None when they were uploaded as they are.
    encryption: EncryptionInfo | None = None

    @property
    def encrypted(self) -> bool:
        return self.encryption is not None

    @property
    def target(self) -> Target:
        return self.manifest.target

    @property
    def scope(self) -> str:
        return self.manifest.scope

    @property
    def created_at(self) -> datetime:
        return self.manifest.created_at

    @property
    def size(self) -> int:
        return self.manifest.size

    @property
    def url(self) -> str:
        return f"{self.location.url}/{self.name}"


# -- URLs and configuration --------------------------------------------------


def is_s3_url(text: str | None) -> TypeGuard[str]:
    """Whether a ``--to``/``--dir``/``--from`` value means a bucket rather than a directory."""
    return text is not None and text.lower().startswith(_SCHEME)


def parse_s3_url(url: str) -> S3Location:
    """``s3://bucket[/prefix]`` as an :class:`S3Location`; ConfigError when malformed."""
    if not is_s3_url(url):
        raise ConfigError(f"{url!r} is not an s3:// URL; write s3://BUCKET/PREFIX")
    rest = url[len(_SCHEME) :]
    if any(c in rest for c in "?#") or "@" in rest.split("/", 1)[0]:
        raise ConfigError(
            f"{url!r}: an s3:// URL is s3://BUCKET/PREFIX only, without credentials, query or "
            "fragment (credentials come from the environment)"
        )
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigError(f"{url!r} names no bucket; write s3://BUCKET/PREFIX")
    try:
        check_bucket_name(bucket)
    except ConfigError as exc:
        raise ConfigError(f"{url!r}: {exc}") from None
    prefix = prefix.strip("/")
    if prefix:
        for segment in prefix.split("/"):
            try:
                check_segment(segment, what="prefix segment")
            except ConfigError as exc:
                raise ConfigError(
                    f"{url!r}: {exc}; the prefix must be plain names joined by single '/', "
                    "with no '.' or '..' segments"
                ) from None
    return S3Location(bucket, prefix)


def split_archive_url(url: str) -> tuple[S3Location, str | None]:
    """``s3://b/p/<archive name>`` as ``(s3://b/p, name)``; any other URL as ``(it, None)``."""
    location = parse_s3_url(url)
    head, _, last = location.prefix.rpartition("/")
    match = ARCHIVE_NAME.fullmatch(last)
    if match is not None and match["target"] in target_names():
        return S3Location(location.bucket, head), last
    return location, None


def remote_config(settings: StackSettings, environ: Mapping[str, str]) -> S3Config:
    """The server remote archives go to.

    With ``BACKUP_S3_ENDPOINT`` set, a managed S3 server described by it,
    ``BACKUP_S3_ACCESS_KEY_ID``, ``BACKUP_S3_SECRET_ACCESS_KEY`` and
    ``BACKUP_S3_REGION`` (default ``us-east-1``); otherwise the stack's own
    MinIO with its root credentials.
    """
    from infra_lib.storage.config import S3Config

    endpoint = environ.get(ENV_ENDPOINT, "")
    if not endpoint:
        return S3Config.from_stack(settings)
    missing = [name for name in (ENV_ACCESS_KEY, ENV_SECRET_KEY) if not environ.get(name)]
    if missing:
        raise ConfigError(f"{ENV_ENDPOINT} is set, so set {' and '.join(missing)} too")
    return S3Config(
        endpoint=endpoint,
        access_key=environ[ENV_ACCESS_KEY],
        secret_key=environ[ENV_SECRET_KEY],
        region=environ.get(ENV_REGION) or "us-east-1",
    )


@contextmanager
def _errors(store: RemoteStore, action: str) -> Iterator[None]:
    from minio.error import MinioException, S3Error
    from urllib3.exceptions import HTTPError

    where = f"{store.config.endpoint} ({store.location})"
    try:
        yield
    except InfraError:
        raise
    except S3Error as exc:
        raise BackupError(f"S3 at {where} refused to {action}: {exc.code}: {exc.message}") from exc
    except (HTTPError, OSError, MinioException) as exc:
        raise ServiceUnavailable(
            f"cannot reach S3 at {where} to {action}: {exc}", service="minio"
        ) from exc


# -- upload -----------------------------------------------------------------


def ensure_bucket(store: RemoteStore, client: Minio | None = None) -> None:
    """Create the bucket if absent; a new one is private (no policy, nothing public)."""
    client = client or store.config.client()
    bucket = store.location.bucket
    with _errors(store, f"check bucket {bucket}"):
        if client.bucket_exists(bucket):
            return
    with _errors(store, f"create bucket {bucket}"):
        client.make_bucket(bucket)
    logger.info("backup: created the private bucket %s", bucket)


def upload_archive(
    store: RemoteStore,
    archive: ArchiveInfo,
    *,
    with_manifest: bool = True,
    passphrase: Passphrase | None = None,
    on_progress: ProgressCallback | None = None,
) -> str:
    """Copy a complete local archive to ``<prefix>/<archive name>/``; return its URL.

    The bucket is created (private) if absent. With ``passphrase`` each data
    file is encrypted while it streams up, under a key with its own salt
    for this archive, and the manifest says how (never with what).

    Data files go first, each one's stored size is checked, and
    ``manifest.json`` goes last. On any failure everything uploaded for this
    archive is deleted and :class:`BackupError` (or ``ServiceUnavailable``)
    raised. ``with_manifest=False`` stops before the manifest, leaving what
    an interrupted upload leaves.
    """
    client = store.config.client()
    ensure_bucket(store, client)
    files = [f.name for f in archive.manifest.files]
    plain = {f.name: f.size for f in archive.manifest.files}
    key = ArchiveKey.new(passphrase) if passphrase is not None else None
    stored = {
        name: size if key is None else encrypted_size(size, key.info.chunk_size)
        for name, size in plain.items()
    }
    uploaded: list[str] = []
    progress = Throttle(on_progress, f"upload {archive.name}", archive.size)
    try:
        for name in files:
            if key is None:
                uploaded.append(_put(store, client, archive, name))
            else:
                uploaded.append(_put_encrypted(store, client, archive, name, plain[name], key))
            progress.add(plain[name])
        for name in files:
            _check_size(store, client, archive.name, name, stored[name])
        if with_manifest:
            if key is None:
                manifest_size = (archive.path / MANIFEST_NAME).stat().st_size
                uploaded.append(_put(store, client, archive, MANIFEST_NAME))
            else:
                body = seal_manifest(
                    key, archive.name, _manifest_with(archive.path / MANIFEST_NAME, key.info)
                )
                manifest_size = len(body)
                uploaded.append(_put_bytes(store, client, archive, MANIFEST_NAME, body))
            _check_size(store, client, archive.name, MANIFEST_NAME, manifest_size)
    except BaseException:
        try:
            _delete_keys(store, client, uploaded)
        except InfraError as cleanup:
            # The upload's own error is the one to report; this only leaves litter.
            logger.warning(
                "backup: could not remove the partial upload of %s: %s", archive.name, cleanup
            )
        raise
    progress.finish()
    url = f"{store.location.url}/{archive.name}"
    logger.info("backup: uploaded %s to %s", archive.path, url)
    return url


def _put(store: RemoteStore, client: Minio, archive: ArchiveInfo, name: str) -> str:
    key = store.location.key(archive.name, name)
    with _errors(store, f"upload {key}"):
        client.fput_object(
            store.location.bucket,
            key,
            str(archive.path / name),
            content_type="application/json"
            if name == MANIFEST_NAME
            else "application/octet-stream",
        )
    return key


def _put_encrypted(
    store: RemoteStore, client: Minio, archive: ArchiveInfo, name: str, size: int, key: ArchiveKey
) -> str:
    object_key = store.location.key(archive.name, name)
    with _errors(store, f"upload {object_key}"), (archive.path / name).open("rb") as source:
        reader = EncryptingReader(key, name, source, size)
        client.put_object(
            store.location.bucket,
            object_key,
            cast("BinaryIO", reader),
            encrypted_size(size, key.info.chunk_size),
            content_type="application/octet-stream",
        )
    return object_key


def _put_bytes(
    store: RemoteStore, client: Minio, archive: ArchiveInfo, name: str, body: bytes
) -> str:
    key = store.location.key(archive.name, name)
    with _errors(store, f"upload {key}"):
        client.put_object(
            store.location.bucket,
            key,
            io.BytesIO(body),
            len(body),
            content_type="application/json",
        )
    return key


def _manifest_with(path: Path, info: EncryptionInfo) -> bytes:
    """The local manifest with the ``encryption`` block added, ready to be sealed."""
    data: dict[str, Any] = json.loads(path.read_bytes())
    data[_ENCRYPTION] = info.model_dump(mode="json")
    return json.dumps(data, indent=2).encode()


def _check_size(store: RemoteStore, client: Minio, archive: str, name: str, size: int) -> None:
    key = store.location.key(archive, name)
    with _errors(store, f"check {key}"):
        stored = client.stat_object(store.location.bucket, key).size
    if stored != size:
        raise BackupError(
            f"{store.location.url}/{archive}/{name} holds {stored} bytes after the upload, "
            f"but the local file has {size}; the upload was removed"
        )


def _delete_keys(store: RemoteStore, client: Minio, keys: Sequence[str]) -> None:
    """Delete ``keys``, manifests first, so a half-deleted archive is never listed."""
    from minio.deleteobjects import DeleteObject

    manifests = [k for k in keys if k.endswith(f"/{MANIFEST_NAME}")]
    rest = [k for k in keys if not k.endswith(f"/{MANIFEST_NAME}")]
    with _errors(store, "delete an archive's objects"):
        for batch in (manifests, rest):
            if not batch:
                continue
            errors = list(
                client.remove_objects(store.location.bucket, [DeleteObject(k) for k in batch])
            )
            if errors:
                raise BackupError(
                    f"could not delete {len(errors)} object(s) in {store.location}: "
                    f"{errors[0].code}: {errors[0].message} ({errors[0].name})"
                )


# -- listing and retention --------------------------------------------------


def _order(name: str) -> tuple[str, int, str]:
    match = ARCHIVE_NAME.fullmatch(name)
    if match is None:
        return ("", 0, name)
    return (match["stamp"], int(match["seq"] or 1), name)


def list_remote(store: RemoteStore, target: Target | None = None) -> list[RemoteArchive]:
    """Complete archives under the prefix (of ``target`` if given), oldest first.

    An archive counts only once its ``manifest.json`` is there and valid;
    ordering is by the time in its name.
    """
    client = store.config.client()
    base = store.location.key() + "/" if store.location.prefix else ""
    found: list[RemoteArchive] = []
    with _errors(store, "list archives"):
        if not client.bucket_exists(store.location.bucket):
            return []
        names = [
            obj.object_name[len(base) : -len(MANIFEST_NAME) - 1]
            for obj in client.list_objects(store.location.bucket, prefix=base, recursive=True)
            if obj.object_name is not None
            and obj.object_name.endswith(f"/{MANIFEST_NAME}")
            and obj.object_name.count("/") == base.count("/") + 1
        ]
    for name in names:
        match = ARCHIVE_NAME.fullmatch(name)
        if match is None or (target is not None and match["target"] != target):
            continue
        if match["target"] not in target_names():
            continue
        try:
            manifest, encryption = _read_manifest(store, client, name)
        except BackupCorrupt as exc:
            logger.warning("backup: skipping %s/%s: %s", store.location, name, exc)
            continue
        if manifest.target != match["target"]:
            logger.warning(
                "backup: skipping %s/%s: its manifest is for %s",
                store.location,
                name,
                manifest.target,
            )
            continue
        found.append(RemoteArchive(store.location, name, manifest, encryption))
    found.sort(key=lambda a: _order(a.name))
    return found


def _get_manifest(store: RemoteStore, client: Minio, name: str) -> bytes:
    key = store.location.key(name, MANIFEST_NAME)
    with _errors(store, f"read {key}"):
        response = client.get_object(store.location.bucket, key)
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()


@dataclass(frozen=True, slots=True)
class _Remote:
    """A remote manifest taken apart: its local part, encryption block, whether it has a MAC."""

    data: dict[str, Any]
    encryption: EncryptionInfo | None
    sealed: bool


def _split_manifest(raw: bytes, where: str) -> _Remote:
    try:
        data = parse_json(raw)
    except ValueError as exc:
        raise BackupCorrupt(f"{where} is not valid JSON: {exc}", path=where) from exc
    if not isinstance(data, dict):
        raise BackupCorrupt(f"{where} is not a JSON object", path=where)
    block = data.pop(_ENCRYPTION, None)
    sealed = data.pop(MAC_MEMBER, None) is not None
    try:
        encryption = EncryptionInfo.model_validate(block) if block is not None else None
    except ValidationError as exc:
        raise BackupCorrupt(
            f"{where} has an invalid {_ENCRYPTION} block: {exc}", path=where
        ) from exc
    return _Remote(data, encryption, sealed)


def _read_manifest(
    store: RemoteStore, client: Minio, name: str
) -> tuple[ArchiveManifest, EncryptionInfo | None]:
    """What listing needs; checked against the schema but not authenticated (no passphrase)."""
    where = f"{store.location.url}/{name}/{MANIFEST_NAME}"
    remote = _split_manifest(_get_manifest(store, client, name), where)
    return parse_manifest(remote.data, where=where), remote.encryption


def find_remote(store: RemoteStore, name: str) -> RemoteArchive:
    """The complete archive ``name``; BackupError when it is absent, incomplete or invalid."""
    match = ARCHIVE_NAME.fullmatch(name)
    client = store.config.client()
    with _errors(store, f"look for {name}"):
        present = (
            match is not None
            and client.bucket_exists(store.location.bucket)
            and any(
                obj.object_name == store.location.key(name, MANIFEST_NAME)
                for obj in client.list_objects(
                    store.location.bucket, prefix=store.location.key(name, MANIFEST_NAME)
                )
            )
        )
    if match is not None and present:
        # Read it here rather than through the listing, which skips an invalid
        # manifest: asked for by name, the reason it is unusable is the answer.
        manifest, encryption = _read_manifest(store, client, name)
        if manifest.target != match["target"]:
            raise BackupCorrupt(
                f"{store.location}/{name} holds a {manifest.target} manifest", path=name
            )
        return RemoteArchive(store.location, name, manifest, encryption)
    raise BackupError(
        f"{store.location}/{name} is not a complete archive (no such archive, or its upload "
        f"did not finish: no {MANIFEST_NAME}); list them with `inv backups --dir {store.location}`"
    )


def prune_remote(
    store: RemoteStore, target: Target, keep: int, *, scope: str | None = None
) -> list[str]:
    """Delete all but the ``keep`` newest complete remote archives of ``target`` (and scope).

    Returns the URLs removed. Incomplete uploads are left alone, as locally.
    """
    if isinstance(keep, bool) or keep < 1:
        raise ConfigError(f"--keep must be at least 1, not {keep!r}")
    archives = [a for a in list_remote(store, target) if scope is None or a.scope == scope]
    doomed = archives[: max(0, len(archives) - keep)]
    if not doomed:
        return []
    client = store.config.client()
    for archive in doomed:
        base = store.location.key(archive.name) + "/"
        with _errors(store, f"list {base}"):
            keys = [
                o.object_name
                for o in client.list_objects(store.location.bucket, prefix=base, recursive=True)
                if o.object_name is not None
            ]
        _delete_keys(store, client, keys)
        logger.info("backup: pruned %s", archive.url)
    return [a.url for a in doomed]


# -- download ---------------------------------------------------------------


def download_archive(
    store: RemoteStore,
    archive: RemoteArchive,
    into: Path,
    *,
    passphrase: Passphrase | None = None,
    on_progress: ProgressCallback | None = None,
) -> Path:
    """Copy ``archive`` into ``into/<name>/`` (0700, files 0600) and return that path.

    The manifest is fetched first and checked before anything in it is
    used: an encrypted archive's MAC must authenticate under ``passphrase``
    (:class:`BackupCorrupt` when it is missing or wrong), and the manifest
    must still be the one that was listed. With ``passphrase`` an archive
    that says it is not encrypted is refused (:class:`RestoreRefused`): an
    attacker's easiest forgery is to strip the encryption. Each stored
    file must then have the size the manifest implies and, unencrypted,
    must not be an encrypted file. Only ``manifest.json`` and the files it
    lists are fetched; their sha256 are checked by the restore that follows.
    Encrypted files are decrypted as they stream in, and a chunk that does
    not authenticate raises :class:`BackupCorrupt`; whatever was written is
    then left for the caller to remove with ``into``.
    """
    client = store.config.client()
    where = f"{archive.url}/{MANIFEST_NAME}"
    raw = _get_manifest(store, client, archive.name)
    remote = _split_manifest(raw, where)
    key: ArchiveKey | None = None
    if remote.encryption is not None:
        if passphrase is None:
            raise ConfigError(
                f"{archive.url} is encrypted; set BACKUP_PASSPHRASE to the passphrase it was "
                "made with"
            )
        key = ArchiveKey.derive(passphrase, remote.encryption)
        open_manifest(key, archive.name, raw, where=where)
    elif remote.sealed:
        raise BackupCorrupt(
            f"{where} carries a {MAC_MEMBER} but no {_ENCRYPTION} block: the block was removed "
            "from an encrypted archive's manifest. Nothing was restored.",
            path=where,
        )
    elif passphrase is not None:
        raise RestoreRefused(
            f"{archive.url} says it is not encrypted, but BACKUP_PASSPHRASE is set: an "
            "encrypted archive whose manifest was stripped of its encryption looks exactly "
            "like this. Nothing was restored. If you made it without --encrypt and trust the "
            "bucket, unset BACKUP_PASSPHRASE for this restore."
        )
    manifest = parse_manifest(remote.data, where=where)
    if manifest != archive.manifest or remote.encryption != archive.encryption:
        raise BackupError(
            f"{where} changed since it was listed; nothing was restored. Run the restore again."
        )
    _check_stored_sizes(store, client, archive.name, manifest, key)
    path = into / archive.name
    ensure_private_dir(path)
    progress = Throttle(on_progress, f"download {archive.name}", archive.size)
    for name in (f.name for f in manifest.files):
        object_key = store.location.key(archive.name, name)
        with _errors(store, f"download {object_key}"):
            response = client.get_object(store.location.bucket, object_key)
            try:
                with _create_private(path / name) as handle:
                    if key is None:
                        _copy_plain(archive, name, response.stream(_CHUNK), handle, progress)
                    else:
                        _decrypt_into(archive, name, key, response.stream(_CHUNK), handle)
                        progress.add(handle.tell())
            finally:
                response.close()
                response.release_conn()
    with _create_private(path / MANIFEST_NAME) as handle:
        # The restore path reads the local format, which has neither block.
        handle.write(raw if key is None else json.dumps(remote.data, indent=2).encode() + b"\n")
    progress.finish()
    return path


def _create_private(path: Path) -> BinaryIO:
    # O_EXCL: never follows a link or reuses a file someone put there first.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "wb")


def _check_stored_sizes(
    store: RemoteStore,
    client: Minio,
    archive: str,
    manifest: ArchiveManifest,
    key: ArchiveKey | None,
) -> None:
    """Every listed file is stored with the size its manifest implies, before any download."""
    for entry in manifest.files:
        want = entry.size if key is None else encrypted_size(entry.size, key.info.chunk_size)
        object_key = store.location.key(archive, entry.name)
        with _errors(store, f"check {object_key}"):
            stored = client.stat_object(store.location.bucket, object_key).size
        if stored != want:
            hint = "" if key is not None else " (an encrypted file, though the manifest says not?)"
            raise BackupCorrupt(
                f"{store.location.url}/{archive}/{entry.name} holds {stored} bytes, but its "
                f"manifest implies {want}{hint}; the archive was altered. Nothing was restored.",
                path=archive,
            )


def _copy_plain(
    archive: RemoteArchive, name: str, chunks: Iterator[bytes], out: BinaryIO, progress: Throttle
) -> None:
    head = b""
    for chunk in chunks:
        if len(head) < len(MAGIC):
            head += chunk[: len(MAGIC) - len(head)]
            if head.startswith(MAGIC):
                raise BackupCorrupt(
                    f"{archive.url}/{name} is an encrypted file, but the manifest says the "
                    "archive is not encrypted: its encryption was stripped from the manifest. "
                    "Nothing was restored.",
                    path=archive.url,
                )
        out.write(chunk)
        progress.add(len(chunk))


def _decrypt_into(
    archive: RemoteArchive, name: str, key: ArchiveKey, chunks: Iterator[bytes], out: BinaryIO
) -> None:
    try:
        decrypt_stream(key, name, chunks, out)
    except BackupCorrupt as exc:
        raise BackupCorrupt(
            f"{archive.url}: {exc}; nothing was restored", path=archive.url
        ) from exc


@contextmanager
def downloaded(
    store: RemoteStore,
    archive: RemoteArchive,
    work_dir: Path,
    *,
    passphrase: Passphrase | None = None,
    on_progress: ProgressCallback | None = None,
) -> Iterator[Path]:
    """:func:`download_archive` into a private directory under ``work_dir``, removed afterwards.

    ``work_dir`` is the local backup directory rather than ``/tmp``, which
    is often a small tmpfs; the ``.restore-`` name keeps it out of listings.
    """
    ensure_private_dir(work_dir)
    temp = Path(tempfile.mkdtemp(prefix=".restore-", dir=work_dir))
    try:
        temp.chmod(0o700)
        yield download_archive(store, archive, temp, passphrase=passphrase, on_progress=on_progress)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
