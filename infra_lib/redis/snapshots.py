"""A service's Redis keys in a local snapshot file, and back.

Part of ``inv snapshot``: the keys under a service's prefix in its DB are
read with ``DUMP`` (the server's own serialisation: every type, exactly)
and their remaining time to live with ``PTTL``, and written to one file,
mode 0600. Restoring removes the keys now under the prefix and ``RESTORE``s
the saved ones in a single ``MULTI``/``EXEC``, so the service sees either
its old keys or the snapshot's, never a mix. Keys of other services in the
same DB are not read or touched.

A ``DUMP`` payload carries the server's RDB version, and an older server
refuses a newer one; a snapshot therefore records the server's version, and
a restore onto an older server is refused before anything changes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra_lib.errors import ConfigError
from infra_lib.redis.keys import prefix_pattern
from infra_lib.stack.envfile import write_private_file

if TYPE_CHECKING:
    import redis

__all__ = ["KeySnapshot", "check_restorable", "read_key_snapshot", "restore_keys", "save_keys"]

_FORMAT = 1
# Keys per round trip: enough to hide latency, small enough to stay well under
# Redis's reply buffer limits for typical development values.
_BATCH = 500


@dataclass(frozen=True, slots=True)
class KeySnapshot:
    """What a key snapshot file holds (its header)."""

    path: Path
    service: str
    db: int
    prefix: str
    created: datetime
    redis_version: str
    keys: int
    size_bytes: int


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(".")[:2] if x.isdigit())


def _server_version(client: redis.Redis) -> str:
    return str(client.info("server")["redis_version"])


def _scan(client: redis.Redis, prefix: str) -> Iterator[bytes]:
    yield from client.scan_iter(match=prefix_pattern(prefix), count=1000)


def save_keys(
    client: redis.Redis, path: Path, *, service: str, db: int, prefix: str, created: datetime
) -> KeySnapshot:
    """Write every key under ``prefix`` of ``client``'s DB to ``path``; what was written.

    A key that expires between the scan and its ``DUMP`` is left out, as it
    would be gone a moment later anyway.
    """
    keys = list(_scan(client, prefix))
    entries: list[list[Any]] = []
    for start in range(0, len(keys), _BATCH):
        batch = keys[start : start + _BATCH]
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.dump(key)
            pipe.pttl(key)
        replies = pipe.execute()
        for key, payload, ttl in zip(batch, replies[0::2], replies[1::2], strict=True):
            if payload is None:
                continue
            entries.append(
                [
                    base64.b64encode(key).decode(),
                    int(ttl) if int(ttl) > 0 else 0,
                    base64.b64encode(payload).decode(),
                ]
            )
    header = {
        "format": _FORMAT,
        "service": service,
        "db": db,
        "prefix": prefix,
        "created": created.isoformat(),
        "redis_version": _server_version(client),
        "keys": len(entries),
    }
    lines = [json.dumps(header), *(json.dumps(e) for e in entries)]
    write_private_file(path, "\n".join(lines) + "\n")
    return read_key_snapshot(path)


def _damaged(path: Path, why: object) -> ConfigError:
    return ConfigError(f"key snapshot {path} cannot be read ({why}); remove the snapshot")


def _read(path: Path) -> tuple[dict[str, Any], list[str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        header = json.loads(lines[0])
    except (OSError, IndexError, ValueError) as exc:
        raise _damaged(path, exc) from exc
    if not isinstance(header, dict) or header.get("format") != _FORMAT:
        raise _damaged(path, "not a key snapshot of this version")
    if header.get("keys") != len(lines) - 1:
        # A file cut short (disk full, interrupted copy) must not restore half the keys.
        raise _damaged(path, f"{len(lines) - 1} key(s) of {header.get('keys')}")
    return header, lines[1:]


def read_key_snapshot(path: Path) -> KeySnapshot:
    """The header of the key snapshot at ``path``; :class:`ConfigError` if it is damaged."""
    header, _ = _read(path)
    return KeySnapshot(
        path=path,
        service=str(header["service"]),
        db=int(header["db"]),
        prefix=str(header["prefix"]),
        created=datetime.fromisoformat(str(header["created"])),
        redis_version=str(header["redis_version"]),
        keys=int(header["keys"]),
        size_bytes=path.stat().st_size,
    )


def check_restorable(client: redis.Redis, snapshot: KeySnapshot) -> None:
    """:class:`ConfigError` unless this server can load ``snapshot``'s payloads."""
    server = _server_version(client)
    if _version(snapshot.redis_version) > _version(server):
        raise ConfigError(
            f"{snapshot.service}: the key snapshot was made on Redis {snapshot.redis_version}, "
            f"this server runs {server}, and an older server cannot load a newer DUMP. "
            "Use a backup (`inv backup` / `inv restore`) instead."
        )


def restore_keys(client: redis.Redis, snapshot: KeySnapshot) -> int:
    """Replace the keys under the snapshot's prefix with the saved ones, atomically.

    ``client`` must be on the service's DB now (it may differ from the one
    saved, if the service was given another). Returns how many keys were
    removed before the saved ones went back.
    """
    check_restorable(client, snapshot)
    _, lines = _read(snapshot.path)
    current = list(_scan(client, snapshot.prefix))
    pipe = client.pipeline(transaction=True)
    for start in range(0, len(current), 1000):
        pipe.unlink(*current[start : start + 1000])
    for line in lines:
        key, ttl, payload = json.loads(line)
        pipe.restore(base64.b64decode(key), int(ttl), base64.b64decode(payload), replace=True)
    pipe.execute()
    return len(current)
