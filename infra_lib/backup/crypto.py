"""Encryption of archive files that leave the machine, streamed chunk by chunk.

A key comes from the passphrase through scrypt with a random salt per
archive; the salt and the scrypt parameters are public and go into the
archive's ``encryption`` block. Each file is then::

    MAGIC (6 bytes) | nonce prefix (8 random bytes) | chunk 0 | chunk 1 | ... | last chunk

Every chunk is AES-256-GCM over up to ``chunk_size`` plaintext bytes (all
but the last exactly that many), with a 16-byte tag. Its nonce is the file's
prefix followed by the chunk index, and its associated data is the file's
name, the index and whether it is the last chunk, so a changed byte, a
dropped tail, reordered chunks or a file put in another's place all fail
authentication. An empty file still has one (empty, tagged) last chunk, so
it cannot be cut to nothing either.

Nothing here keeps a whole file in memory: one chunk at a time.

**The manifest.** It stays readable, because listing archives must work
without the passphrase, so it is authenticated instead: scrypt derives 64
bytes, the first 32 are the AES key and the last 32 a separate HMAC-SHA256
key (two independent PBKDF2 output blocks, so neither key tells anything
about the other). :func:`seal_manifest` appends the MAC as the manifest's
last member, computed over every byte before it and the archive's name;
:func:`open_manifest` recomputes it over the exact bytes downloaded and
refuses any difference, a missing MAC, or an archive moved under another
name. So without the passphrase nobody can change a single byte of an
encrypted archive's manifest (an owner, a grant, a checksum, a DB number)
and have a restore use it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import re
import secrets
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from infra_lib.errors import BackupCorrupt, BackupError, ConfigError

__all__ = [
    "CHUNK_SIZE",
    "ENV_PASSPHRASE",
    "MIN_PASSPHRASE",
    "ArchiveKey",
    "EncryptingReader",
    "EncryptionInfo",
    "Passphrase",
    "decrypt_stream",
    "encrypted_size",
    "open_manifest",
    "passphrase_from",
    "seal_manifest",
]

#: The only place a passphrase is read from: never an argument, which `ps` would show.
ENV_PASSPHRASE = "BACKUP_PASSPHRASE"  # noqa: S105 - a variable name, not a secret
MIN_PASSPHRASE = 12
CHUNK_SIZE = 1 << 20
MAGIC = b"ILBK\x00\x01"
_PREFIX = 8
_TAG = 16
_KEY = 32
_SALT = 16
_SCRYPT_N = 1 << 15
_SCRYPT_R = 8
_SCRYPT_P = 1
# A manifest could come from anyone who can write to the bucket; these caps keep
# its parameters from turning a restore into an out-of-memory or a week of CPU.
_MAX_N = 1 << 20
_MAX_R = 16
_MAX_P = 4
_MAX_CHUNK = 64 << 20
_ALTERED = "wrong passphrase, or the archive was altered"
#: The member :func:`seal_manifest` appends, and nothing may follow it.
MAC_MEMBER = "manifest_mac"
_MAC_TRAILER = re.compile(rb',\n  "' + MAC_MEMBER.encode() + rb'": "([0-9a-f]{64})"\n\}\n\Z')
#: Keeps this MAC from ever being valid for another purpose or format.
_MAC_CONTEXT = b"infra-lib archive manifest, HMAC-SHA256, v1\x00"


class Passphrase:
    """A passphrase that never shows up in a repr, a log line or a traceback's locals."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if len(value) < MIN_PASSPHRASE:
            raise ConfigError(
                f"{ENV_PASSPHRASE} is shorter than {MIN_PASSPHRASE} characters; "
                "use a long random passphrase and keep it somewhere safe"
            )
        self._value = value

    def reveal(self) -> bytes:
        return self._value.encode()

    def __repr__(self) -> str:
        return "Passphrase('***')"

    __str__ = __repr__


def passphrase_from(environ: Mapping[str, str]) -> Passphrase | None:
    """The passphrase in ``BACKUP_PASSPHRASE``, None when unset or empty.

    ConfigError when it is set but shorter than :data:`MIN_PASSPHRASE`.
    """
    value = environ.get(ENV_PASSPHRASE, "")
    return Passphrase(value) if value else None


class EncryptionInfo(BaseModel):
    """The ``encryption`` block of a remote manifest: everything but the passphrase."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    algorithm: Literal["AES-256-GCM"] = "AES-256-GCM"
    kdf: Literal["scrypt"] = "scrypt"
    n: int = Field(default=_SCRYPT_N, ge=2, le=_MAX_N)
    r: int = Field(default=_SCRYPT_R, ge=1, le=_MAX_R)
    p: int = Field(default=_SCRYPT_P, ge=1, le=_MAX_P)
    salt: str
    chunk_size: int = Field(default=CHUNK_SIZE, ge=1, le=_MAX_CHUNK)

    @field_validator("n")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError("must be a power of two")
        return value

    @field_validator("salt")
    @classmethod
    def _salt(cls, value: str) -> str:
        try:
            raw = base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError("must be base64") from exc
        if len(raw) < _SALT:
            raise ValueError(f"must be at least {_SALT} bytes")
        return value


@dataclass(frozen=True, slots=True)
class ArchiveKey:
    """The key of one archive and the public parameters it was derived with."""

    info: EncryptionInfo
    key: bytes = field(repr=False)
    #: Authenticates the manifest; never used for anything else.
    mac_key: bytes = field(repr=False)

    @classmethod
    def new(cls, passphrase: Passphrase, *, chunk_size: int = CHUNK_SIZE) -> ArchiveKey:
        """A key for a new archive, with a fresh random salt."""
        salt = base64.b64encode(secrets.token_bytes(_SALT)).decode()
        return cls.derive(passphrase, EncryptionInfo(salt=salt, chunk_size=chunk_size))

    @classmethod
    def derive(cls, passphrase: Passphrase, info: EncryptionInfo) -> ArchiveKey:
        """The key of an existing archive (right or wrong: only decryption can tell)."""
        derived = hashlib.scrypt(
            passphrase.reveal(),
            salt=base64.b64decode(info.salt),
            n=info.n,
            r=info.r,
            p=info.p,
            # OpenSSL's default cap (32 MiB) is just below what n=2**15, r=8 needs.
            maxmem=2 * 128 * info.n * info.r * info.p + (1 << 20),
            dklen=2 * _KEY,
        )
        # scrypt ends in PBKDF2, whose first 32 bytes do not depend on dklen:
        # the AES key is the one archives made before the MAC key existed had.
        return cls(info, derived[:_KEY], derived[_KEY:])


def encrypted_size(size: int, chunk_size: int = CHUNK_SIZE) -> int:
    """Bytes of the encrypted form of a ``size``-byte file."""
    chunks = max(1, -(-size // chunk_size))
    return len(MAGIC) + _PREFIX + size + chunks * _TAG


def _aad(name: str, index: int, last: bool) -> bytes:
    return name.encode() + b"\x00" + struct.pack(">QB", index, 1 if last else 0)


def _nonce(prefix: bytes, index: int) -> bytes:
    if index >= 1 << 32:
        raise BackupError("a file too large to encrypt in 2**32 chunks; raise the chunk size")
    return prefix + struct.pack(">I", index)


def _aesgcm(key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


class EncryptingReader(io.RawIOBase):
    """The encrypted form of ``source``, read like a file (what an S3 upload wants).

    ``size`` is the plaintext size the manifest records; a source that turns
    out shorter or longer raises BackupError rather than uploading something
    that would not match it.
    """

    def __init__(self, key: ArchiveKey, name: str, source: IO[bytes], size: int) -> None:
        super().__init__()
        self._aead = _aesgcm(key.key)
        self._chunk = key.info.chunk_size
        self._name = name
        self._source = source
        self._left = size
        self._size = size
        self._prefix = secrets.token_bytes(_PREFIX)
        self._index = 0
        self._done = False
        self._buffer = bytearray(MAGIC + self._prefix)

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> None:
        want = min(self._chunk, self._left)
        plain = self._source.read(want)
        if len(plain) != want:
            raise BackupError(
                f"{self._name} ended after {self._size - self._left + len(plain)} bytes while "
                f"encrypting it; the archive says {self._size}"
            )
        self._left -= want
        last = self._left == 0
        if last and self._source.read(1):
            raise BackupError(f"{self._name} is longer than the {self._size} bytes recorded")
        self._buffer += self._aead.encrypt(
            _nonce(self._prefix, self._index), plain, _aad(self._name, self._index, last)
        )
        self._index += 1
        self._done = last

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while not self._done:
                self._next_chunk()
        else:
            while len(self._buffer) < size and not self._done:
                self._next_chunk()
        end = len(self._buffer) if size is None or size < 0 else size
        out = bytes(self._buffer[:end])
        del self._buffer[:end]
        return out


def decrypt_stream(key: ArchiveKey, name: str, chunks: Iterable[bytes], out: IO[bytes]) -> int:
    """Write the plaintext of the encrypted ``chunks`` to ``out``; return its size.

    Only authenticated chunks are written. A wrong key, any changed byte, a
    missing tail, reordered or foreign chunks raise :class:`BackupCorrupt`
    (``out`` then holds a prefix of the plaintext at most; throw it away).
    """
    from cryptography.exceptions import InvalidTag

    aead = _aesgcm(key.key)
    block = key.info.chunk_size + _TAG
    header = len(MAGIC) + _PREFIX
    buffer = bytearray()
    prefix: bytes | None = None
    index = 0
    written = 0

    def fail(why: str) -> BackupCorrupt:
        return BackupCorrupt(f"cannot decrypt {name}: {why}", path=name)

    def open_chunk(prefix: bytes, data: bytes | bytearray, last: bool) -> None:
        nonlocal index, written
        try:
            plain = aead.decrypt(_nonce(prefix, index), bytes(data), _aad(name, index, last))
        except InvalidTag:
            raise fail(f"chunk {index} does not authenticate: {_ALTERED}") from None
        out.write(plain)
        written += len(plain)
        index += 1

    for piece in chunks:
        buffer += piece
        if prefix is None:
            if len(buffer) < header:
                continue
            if bytes(buffer[: len(MAGIC)]) != MAGIC:
                raise fail(f"it is not an encrypted archive file: {_ALTERED}")
            prefix = bytes(buffer[len(MAGIC) : header])
            del buffer[:header]
        # A full block is the last one only if nothing follows, so keep one back.
        while len(buffer) > block:
            open_chunk(prefix, buffer[:block], last=False)
            del buffer[:block]
    if prefix is None:
        raise fail(f"it is shorter than its header: {_ALTERED}")
    if len(buffer) < _TAG:
        raise fail(f"it ends inside a chunk: {_ALTERED}")
    open_chunk(prefix, buffer, last=True)
    return written


def _manifest_mac(key: ArchiveKey, name: str, body: bytes) -> str:
    message = _MAC_CONTEXT + name.encode() + b"\x00" + body
    return hmac.new(key.mac_key, message, hashlib.sha256).hexdigest()


def seal_manifest(key: ArchiveKey, name: str, body: bytes) -> bytes:
    """``body`` (a JSON object as ``json.dumps(..., indent=2)`` writes it) with its MAC added.

    The MAC covers the archive's ``name`` and every byte of ``body`` but
    its closing brace, and goes in as the object's last member, so the
    result is still the same JSON object plus one key.
    """
    if not body.endswith(b"\n}"):
        raise ValueError("seal_manifest wants a JSON object written with indent=2")
    head = body[:-2]
    return head + f',\n  "{MAC_MEMBER}": "{_manifest_mac(key, name, head)}"\n}}\n'.encode()


def open_manifest(key: ArchiveKey, name: str, raw: bytes, *, where: str) -> None:
    """Check the MAC :func:`seal_manifest` added to ``raw``; BackupCorrupt when it is not right.

    Refuses a manifest without a MAC (or with anything after it) as well as
    one whose MAC does not match: either means someone without the
    passphrase changed it, or the passphrase is not the archive's.
    """
    found = _MAC_TRAILER.search(raw)
    if found is None:
        raise BackupCorrupt(
            f"{where} is an encrypted archive whose manifest has no {MAC_MEMBER} at its end; "
            "it was changed by someone without the passphrase (or made by an infra-lib too "
            "old to authenticate it). Nothing was restored.",
            path=where,
        )
    expected = _manifest_mac(key, name, raw[: found.start()])
    if not hmac.compare_digest(expected.encode(), found[1]):
        raise BackupCorrupt(
            f"{where}: its manifest does not authenticate: {_ALTERED} (even one changed byte, "
            "or the archive under another name, fails). Nothing was restored.",
            path=where,
        )
