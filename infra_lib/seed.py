"""Seed data: the fixtures a service's manifest entry names, loaded with its own credentials.

``seed = { postgres = ["seeds/board/*.sql"], redis = "seeds/board/redis.json",
storage = "seeds/board/files/" }`` in ``infra.toml``; paths are relative to
the manifest. Each store is loaded all or nothing:

- **PostgreSQL**: the files, in name order, run as the service's own role in
  one transaction, statement by statement so that an error names the file
  and line. A bad file leaves none of them loaded (a stricter reading of
  "one transaction per file": no service is left with half its fixtures).
- **Redis**: a JSON object of keys (see :func:`read_redis_seed`), written in
  one ``MULTI``/``EXEC`` as the service's ACL user; every key must start with
  the service's key prefix.
- **Storage**: every file under the folder becomes an object whose key is its
  path under the folder (``boards/welcome.txt``), uploaded with the
  service's own keys; a failed upload removes what this run uploaded.

Seeding writes over the keys and objects it names and runs the SQL as
written: make the SQL safe to run on an empty database (``inv reset`` gives
one), not necessarily twice.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra_lib.errors import SeedError

if TYPE_CHECKING:
    from infra_lib.manifest import SeedData
    from infra_lib.service import ServiceSettings

__all__ = [
    "RedisSeedKey",
    "SeedReport",
    "read_redis_seed",
    "seed_postgres",
    "seed_redis",
    "seed_service",
    "seed_sql_files",
    "seed_storage",
    "split_sql",
]

_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
_REDIS_TYPES = ("string", "list", "hash", "set", "zset")
# A dump's own BEGIN/COMMIT would end the one transaction the seed runs in.
_TRANSACTION_CONTROL = re.compile(
    r"(?is)^(begin|start\s+transaction|commit|end)(\s+(work|transaction))?$"
)


@dataclass
class SeedReport:
    """What :func:`seed_service` loaded into one service."""

    service: str
    sql_files: list[str] = field(default_factory=list)
    statements: int = 0
    redis_keys: int = 0
    objects: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        """One line for a person: what went where."""
        parts = []
        if self.sql_files:
            parts.append(f"{len(self.sql_files)} SQL file(s), {self.statements} statement(s)")
        if self.redis_keys:
            parts.append(f"{self.redis_keys} Redis key(s)")
        if self.objects:
            parts.append(f"{self.objects} object(s)")
        return ", ".join(parts) or "nothing to load"


# -- PostgreSQL ---------------------------------------------------------------


def split_sql(text: str) -> list[tuple[int, int, str]]:
    """The statements of a SQL script: ``(line, offset, statement)`` each.

    ``line`` (1-based) is where the statement's first token is and
    ``offset`` its index in ``text``. Semicolons inside quotes, dollar-quoted
    bodies and comments do not end a statement. Running the statements one
    by one is what lets an error say on which line it happened.
    """
    statements: list[tuple[int, int, str]] = []
    first: int | None = None
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if c == ";":
            if first is not None:
                statements.append((text.count("\n", 0, first) + 1, first, text[first:i].strip()))
            first = None
            i += 1
            continue
        if not c.isspace() and first is None:
            first = i
        if c in "'\"":
            i = _quote_end(text, i, c)
            continue
        if c == "$" and (tag := _DOLLAR_TAG.match(text, i)):
            end = text.find(tag.group(0), tag.end())
            i = n if end < 0 else end + len(tag.group(0))
            continue
        i += 1
    if first is not None and text[first:].strip():
        statements.append((text.count("\n", 0, first) + 1, first, text[first:].strip()))
    return statements


def _quote_end(text: str, start: int, quote: str) -> int:
    i = start + 1
    while True:
        end = text.find(quote, i)
        if end < 0:
            return len(text)
        # A doubled quote is the quote character itself.
        if text.startswith(quote * 2, end):
            i = end + 2
            continue
        return end + 1


def seed_sql_files(base: Path, patterns: Sequence[str]) -> list[Path]:
    """The SQL files ``patterns`` name under ``base``, in name order, each once.

    A pattern that matches nothing is an error: a typo would otherwise load
    nothing without a word.
    """
    found: dict[Path, None] = {}
    for pattern in patterns:
        matches = sorted(p for p in base.glob(pattern) if p.is_file())
        if not matches:
            raise SeedError(f"seed.postgres: {pattern!r} matches no file under {base}")
        found.update(dict.fromkeys(matches))
    return sorted(found, key=lambda p: (p.name, str(p)))


def seed_postgres(settings: ServiceSettings, files: Sequence[Path]) -> int:
    """Run ``files`` in one transaction as the service's role; the number of statements.

    A file's own ``BEGIN``/``COMMIT`` are skipped, so a dump made with them
    still loads all or nothing. On an error nothing is kept, and the
    :class:`SeedError` names the file, the line and the server's message.
    """
    import psycopg

    scripts = []
    for path in files:
        try:
            scripts.append((path, path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise SeedError(f"{path}: cannot read it: {exc}") from exc
    try:
        conn = settings.postgres(connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise SeedError(
            f"cannot connect to {settings.name}'s database to seed it: "
            f"{str(exc).strip().splitlines()[0]}"
        ) from exc
    count = 0
    with conn:
        for path, text in scripts:
            for line, offset, statement in split_sql(text):
                if _TRANSACTION_CONTROL.match(statement):
                    continue
                try:
                    conn.execute(statement)
                except psycopg.Error as exc:
                    where = line
                    position = exc.diag.statement_position
                    if position and position.isdigit():
                        where = text.count("\n", 0, offset + int(position) - 1) + 1
                    message = (exc.diag.message_primary or str(exc)).strip()
                    raise SeedError(
                        f"{path}:{where}: {message}; nothing of {settings.name}'s SQL seed was kept"
                    ) from exc
                count += 1
    return count


# -- Redis --------------------------------------------------------------------


@dataclass(frozen=True)
class RedisSeedKey:
    """One key of a Redis seed file."""

    key: str
    type: str
    value: Any
    #: Seconds to live; None: the key does not expire.
    ttl: int | None = None


def read_redis_seed(path: Path, prefix: str) -> list[RedisSeedKey]:
    """The keys of a Redis seed file, checked.

    The file is a JSON object from key to value. A string or number is a
    string key, an array a list; anything else takes the long form
    ``{"type": "hash", "value": {...}, "ttl": 3600}`` with ``type`` one of
    string, list, hash, set (an array) or zset (an object of member to
    score). Every key must start with ``prefix``, the service's: its ACL user
    could not write any other.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SeedError(f"{path}: cannot read it: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SeedError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise SeedError(f"{path}: must hold a JSON object of keys, not {type(data).__name__}")

    def where(key: str) -> str:
        at = text.find(json.dumps(key))
        return f"{path}:{text.count(chr(10), 0, at) + 1 if at >= 0 else 1}"

    keys = []
    for key, raw in data.items():
        if not key.startswith(prefix):
            raise SeedError(
                f"{where(key)}: key {key!r} does not start with the service's prefix {prefix!r}"
            )
        if isinstance(raw, str | int | float) and not isinstance(raw, bool):
            keys.append(RedisSeedKey(key, "string", str(raw)))
            continue
        if isinstance(raw, list):
            raw = {"type": "list", "value": raw}
        if not isinstance(raw, dict) or set(raw) - {"type", "value", "ttl"} or "value" not in raw:
            raise SeedError(
                f'{where(key)}: key {key!r}: give a string, an array, or {{"type": ..., '
                '"value": ..., "ttl": seconds}'
            )
        kind = raw.get("type", "string")
        ttl = raw.get("ttl")
        if kind not in _REDIS_TYPES:
            raise SeedError(
                f"{where(key)}: key {key!r}: type {kind!r} is not one of {', '.join(_REDIS_TYPES)}"
            )
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0):
            raise SeedError(f"{where(key)}: key {key!r}: ttl must be whole seconds > 0")
        problem = _value_problem(kind, raw["value"])
        if problem:
            raise SeedError(f"{where(key)}: key {key!r}: a {kind} needs {problem}")
        keys.append(RedisSeedKey(key, kind, raw["value"], ttl))
    return keys


def _value_problem(kind: str, value: Any) -> str | None:
    def scalar(v: Any) -> bool:
        return isinstance(v, str | int | float) and not isinstance(v, bool)

    if kind == "string":
        return None if scalar(value) else "a string or number"
    if kind in ("list", "set"):
        ok = isinstance(value, list) and bool(value) and all(scalar(v) for v in value)
        return None if ok else "a non-empty array of strings or numbers"
    if kind == "hash":
        ok = isinstance(value, dict) and bool(value) and all(scalar(v) for v in value.values())
        return None if ok else "a non-empty object of strings or numbers"
    ok = (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value.values())
    )
    return None if ok else "a non-empty object of member to numeric score"


def seed_redis(settings: ServiceSettings, path: Path) -> int:
    """Write the keys of ``path`` in one transaction as the service's user; how many."""
    import redis

    keys = read_redis_seed(path, settings.redis_key_prefix)
    client = settings.redis(socket_timeout=10)
    try:
        pipe = client.pipeline(transaction=True)
        for k in keys:
            # Replaced, not merged: seeding twice gives the same contents.
            pipe.delete(k.key)
            if k.type == "string":
                pipe.set(k.key, k.value)
            elif k.type == "list":
                pipe.rpush(k.key, *k.value)
            elif k.type == "set":
                pipe.sadd(k.key, *k.value)
            elif k.type == "hash":
                pipe.hset(k.key, mapping=k.value)
            else:
                pipe.zadd(k.key, k.value)
            if k.ttl:
                pipe.expire(k.key, k.ttl)
        pipe.execute()
    except redis.RedisError as exc:
        raise SeedError(
            f"{path}: Redis refused the seed of {settings.name} ({exc}); no key of it was written"
        ) from exc
    finally:
        client.close()
    return len(keys)


# -- Storage ------------------------------------------------------------------


def _seed_objects(folder: Path, prefixes: Sequence[str]) -> Iterator[tuple[Path, str]]:
    if not folder.is_dir():
        raise SeedError(f"seed.storage: {folder} is not a folder")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = path.relative_to(folder).as_posix()
        if not any(key.startswith(p) for p in prefixes):
            raise SeedError(
                f"{path}: its key would be {key!r}, outside the service's prefixes "
                f"({', '.join(prefixes)}); put it in a folder named after one of them"
            )
        yield path, key


def seed_storage(settings: ServiceSettings, folder: Path) -> int:
    """Upload every file under ``folder`` with the service's keys; how many.

    The objects are checked before anything is sent; if an upload fails,
    the ones this run sent are removed again.
    """
    from infra_lib.storage.config import translate_errors

    config = settings.s3_config()
    bucket = settings.bucket
    objects = list(_seed_objects(folder, settings.prefixes))
    client = config.client()
    sent: list[str] = []
    try:
        for path, key in objects:
            with translate_errors(config, "upload a seed object", bucket=bucket, key=key):
                client.fput_object(bucket, key, str(path))
            sent.append(key)
    except Exception as exc:
        for key in sent:
            # The upload's error is the one to report, not a failed clean-up.
            with contextlib.suppress(Exception):
                client.remove_object(bucket, key)
        raise SeedError(
            f"{folder}: seeding {settings.name}'s objects failed ({exc}); "
            f"the {len(sent)} object(s) sent before were removed"
        ) from exc
    return len(objects)


# -- all of a service ---------------------------------------------------------


def seed_service(settings: ServiceSettings, seed: SeedData, base: Path) -> SeedReport:
    """Load ``seed`` (paths under ``base``, the manifest's folder) into one service.

    The stores are loaded one after the other: PostgreSQL, Redis, storage.
    Each is all or nothing; a failure stops before the next one, and the
    error says which store and file.
    """
    started = time.perf_counter()
    report = SeedReport(settings.name)
    if seed.postgres:
        files = seed_sql_files(base, seed.postgres)
        report.statements = seed_postgres(settings, files)
        report.sql_files = [str(p.relative_to(base)) for p in files]
    if seed.redis is not None:
        report.redis_keys = seed_redis(settings, base / seed.redis)
    if seed.storage is not None:
        report.objects = seed_storage(settings, base / seed.storage)
    report.seconds = time.perf_counter() - started
    return report
