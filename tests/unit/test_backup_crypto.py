"""The chunked encryption of uploaded archive files, without a server."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from infra_lib.backup.crypto import (
    CHUNK_SIZE,
    ENV_PASSPHRASE,
    MAC_MEMBER,
    ArchiveKey,
    EncryptingReader,
    EncryptionInfo,
    Passphrase,
    decrypt_stream,
    encrypted_size,
    open_manifest,
    passphrase_from,
    seal_manifest,
)
from infra_lib.errors import BackupCorrupt, BackupError, ConfigError

HEADER = 6 + 8
BLOCK = CHUNK_SIZE + 16
NAME = "001-db0.jsonl.gz"


@pytest.fixture(scope="module")
def key() -> ArchiveKey:
    return ArchiveKey.new(Passphrase("correct horse battery staple"))


def _encrypt(key: ArchiveKey, plain: bytes, name: str = NAME, read_size: int = 5 << 20) -> bytes:
    reader = EncryptingReader(key, name, io.BytesIO(plain), len(plain))
    parts = []
    while part := reader.read(read_size):
        parts.append(part)
    return b"".join(parts)


def _pieces(data: bytes, size: int = 64 << 10) -> Iterator[bytes]:
    """The ciphertext as a download hands it over: pieces that ignore chunk edges."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _decrypt(key: ArchiveKey, data: bytes, name: str = NAME) -> bytes:
    out = io.BytesIO()
    written = decrypt_stream(key, name, _pieces(data), out)
    assert written == len(out.getvalue())
    return out.getvalue()


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 5]
)
def test_round_trip(key: ArchiveKey, size: int) -> None:
    plain = os.urandom(size)
    sealed = _encrypt(key, plain)
    assert len(sealed) == encrypted_size(size)
    assert size < 64 or plain[:64] not in sealed
    assert _decrypt(key, sealed) == plain
    # The same key with the parameters read back from the manifest gives the same bytes.
    again = ArchiveKey.derive(
        Passphrase("correct horse battery staple"),
        EncryptionInfo.model_validate_json(key.info.model_dump_json()),
    )
    assert _decrypt(again, sealed) == plain


def test_small_reads_give_the_same_stream(key: ArchiveKey) -> None:
    plain = os.urandom(CHUNK_SIZE + 100)
    sealed = _encrypt(key, plain, read_size=777)
    assert _decrypt(key, sealed) == plain


def test_each_file_gets_its_own_nonces(key: ArchiveKey) -> None:
    plain = b"x" * 1000
    assert _encrypt(key, plain) != _encrypt(key, plain)


def test_wrong_passphrase_fails(key: ArchiveKey) -> None:
    sealed = _encrypt(key, b"secret data" * 100)
    wrong = ArchiveKey.derive(Passphrase("not the right passphrase"), key.info)
    with pytest.raises(BackupCorrupt, match="wrong passphrase, or the archive was altered"):
        _decrypt(wrong, sealed)


@pytest.mark.parametrize("where", [0, 7, HEADER, HEADER + 5, HEADER + BLOCK + 1, -1])
def test_a_flipped_byte_fails(key: ArchiveKey, where: int) -> None:
    sealed = bytearray(_encrypt(key, os.urandom(2 * CHUNK_SIZE + 10)))
    sealed[where] ^= 0x01
    with pytest.raises(BackupCorrupt):
        _decrypt(key, bytes(sealed))


@pytest.mark.parametrize("size", [2 * CHUNK_SIZE, 2 * CHUNK_SIZE + 10])
def test_dropping_the_last_chunk_fails(key: ArchiveKey, size: int) -> None:
    sealed = _encrypt(key, os.urandom(size))
    last = BLOCK if size % CHUNK_SIZE == 0 else size % CHUNK_SIZE + 16
    truncated = sealed[:-last]
    assert len(truncated) == HEADER + 2 * BLOCK - (BLOCK if last == BLOCK else 0)
    # The chunk now at the end was sealed as "not the last", so it does not open as one.
    with pytest.raises(BackupCorrupt, match=r"chunk \d does not authenticate"):
        _decrypt(key, truncated)


def test_cutting_inside_a_chunk_or_to_nothing_fails(key: ArchiveKey) -> None:
    sealed = _encrypt(key, os.urandom(100))
    for cut in (sealed[:-1], sealed[: HEADER + 10], sealed[:HEADER], sealed[:3], b""):
        with pytest.raises(BackupCorrupt):
            _decrypt(key, cut)


def test_swapped_chunks_fail(key: ArchiveKey) -> None:
    sealed = _encrypt(key, os.urandom(3 * CHUNK_SIZE + 5))
    header, body = sealed[:HEADER], sealed[HEADER:]
    blocks = [body[i : i + BLOCK] for i in range(0, len(body), BLOCK)]
    assert len(blocks) == 4
    blocks[0], blocks[1] = blocks[1], blocks[0]
    with pytest.raises(BackupCorrupt, match="chunk 0"):
        _decrypt(key, header + b"".join(blocks))


def test_a_file_under_another_name_fails(key: ArchiveKey) -> None:
    sealed = _encrypt(key, b"belongs to db0", name="001-db0.jsonl.gz")
    with pytest.raises(BackupCorrupt):
        _decrypt(key, sealed, name="002-db1.jsonl.gz")


def test_a_source_that_changed_size_is_refused(key: ArchiveKey) -> None:
    short = EncryptingReader(key, NAME, io.BytesIO(b"abc"), 10)
    with pytest.raises(BackupError, match="ended after 3 bytes"):
        short.read()
    long = EncryptingReader(key, NAME, io.BytesIO(b"abcdef"), 3)
    with pytest.raises(BackupError, match="longer than"):
        long.read()


def test_the_manifest_block_holds_nothing_secret(key: ArchiveKey) -> None:
    block = key.info.model_dump(mode="json")
    assert set(block) == {"algorithm", "kdf", "n", "r", "p", "salt", "chunk_size"}
    assert block["algorithm"] == "AES-256-GCM" and block["kdf"] == "scrypt"
    assert (block["n"], block["r"], block["p"]) == (2**15, 8, 1)
    text = json.dumps(block)
    assert "correct horse" not in text
    assert key.key.hex() not in text and "battery" not in repr(key)


def test_each_archive_key_has_its_own_salt() -> None:
    phrase = Passphrase("correct horse battery staple")
    first, second = ArchiveKey.new(phrase), ArchiveKey.new(phrase)
    assert first.info.salt != second.info.salt
    assert first.key != second.key


@pytest.mark.parametrize(
    "changes",
    [{"n": 2**30}, {"n": 1000}, {"r": 1000}, {"salt": "short"}, {"algorithm": "ROT13"}],
)
def test_unreasonable_parameters_are_rejected(key: ArchiveKey, changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="validation error"):
        EncryptionInfo.model_validate({**key.info.model_dump(), **changes})


def test_passphrase_comes_from_the_environment_and_is_long_enough() -> None:
    assert passphrase_from({}) is None
    assert passphrase_from({ENV_PASSPHRASE: ""}) is None
    with pytest.raises(ConfigError, match="shorter than 12"):
        passphrase_from({ENV_PASSPHRASE: "too-short"})
    phrase = passphrase_from({ENV_PASSPHRASE: "long enough, surely"})
    assert phrase is not None
    assert "long enough" not in repr(phrase) and "long enough" not in str(phrase)


# -- the manifest MAC ---------------------------------------------------------

ARCHIVE = "20261122T010203Z-postgres"


def _body() -> bytes:
    return json.dumps({"format": 1, "encryption": {"salt": "x"}}, indent=2).encode()


def test_a_sealed_manifest_is_the_same_json_plus_its_mac(key: ArchiveKey) -> None:
    sealed = seal_manifest(key, ARCHIVE, _body())
    data = json.loads(sealed)
    assert data.pop(MAC_MEMBER) and data == json.loads(_body())
    open_manifest(key, ARCHIVE, sealed, where="m")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b: b.replace(b'"format": 1', b'"format": 2'),
        lambda b: b.replace(b'"format": 1', b'"format":  1'),  # even whitespace
        lambda b: b[:-5] + (b"1" if b[-5:-4] == b"0" else b"0") + b[-4:],  # the MAC itself
    ],
    ids=["value", "whitespace", "mac"],
)
def test_any_changed_byte_fails(key: ArchiveKey, tamper: Any) -> None:
    sealed = seal_manifest(key, ARCHIVE, _body())
    changed = tamper(sealed)
    assert changed != sealed
    with pytest.raises(BackupCorrupt, match="wrong passphrase, or the archive was altered"):
        open_manifest(key, ARCHIVE, changed, where="m")


def test_a_manifest_without_its_mac_or_with_more_after_it_fails(key: ArchiveKey) -> None:
    sealed = seal_manifest(key, ARCHIVE, _body())
    for raw in (_body() + b"\n", sealed + b" ", sealed[:-2] + b', "x": 1}\n'):
        with pytest.raises(BackupCorrupt, match=f"no {MAC_MEMBER}"):
            open_manifest(key, ARCHIVE, raw, where="m")


def test_the_mac_binds_the_archive_name_and_the_passphrase(key: ArchiveKey) -> None:
    sealed = seal_manifest(key, ARCHIVE, _body())
    with pytest.raises(BackupCorrupt, match="does not authenticate"):
        open_manifest(key, "20991122T010203Z-postgres", sealed, where="m")
    other = ArchiveKey.derive(Passphrase("another long passphrase"), key.info)
    with pytest.raises(BackupCorrupt, match="does not authenticate"):
        open_manifest(other, ARCHIVE, sealed, where="m")


def test_the_mac_key_is_not_the_aes_key_and_the_aes_key_is_unchanged(key: ArchiveKey) -> None:
    import base64
    import hashlib

    assert len(key.mac_key) == len(key.key) == 32
    assert key.mac_key != key.key
    # The AES key is the 32-byte scrypt output archives made before the MAC existed used.
    info = key.info
    old = hashlib.scrypt(
        b"correct horse battery staple",
        salt=base64.b64decode(info.salt),
        n=info.n,
        r=info.r,
        p=info.p,
        maxmem=2 * 128 * info.n * info.r * info.p + (1 << 20),
        dklen=32,
    )
    assert key.key == old
    assert key.mac_key.hex() not in repr(key) and key.key.hex() not in repr(key)
