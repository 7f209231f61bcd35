"""One Redis ACL user per service (Redis 7+), created or corrected idempotently.

Redis ACLs cannot tie a user to a DB number: any user allowed ``SELECT``
reaches every DB. What they can do is tie a user to key and channel
patterns, which apply in every DB: with ``key_prefix="board-service:"`` the
user may touch keys and pub/sub channels starting with ``board-service:``
only, whatever DB it selects, so a wrong ``SELECT`` (or a deliberate one)
reaches nothing of another service's. The DB number a service gets from
:class:`~infra_lib.redis.allocator.RedisDbAllocator` keeps services apart by
convention; the prefix is the enforced boundary. Pub/sub channels ignore DB
numbers altogether, which is why channels are confined to the same prefix.

Besides its patterns, a user gets a password of its own (revocable without
touching the others) and no administrative, server-wide or keyspace-wide
commands (see :data:`DEFAULT_SERVICE_COMMANDS`).

ACL users live in server memory; every change is saved to the server's ACL
file when it has one (the compose stack does), so they survive restarts.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TypeAlias, cast

import redis
import redis.exceptions

from infra_lib.changes import Change
from infra_lib.errors import ConfigError, ProvisionError
from infra_lib.redis.config import RedisConfig, translate_errors
from infra_lib.redis.keys import validate_key_prefix

__all__ = ["DEFAULT_SERVICE_COMMANDS", "Change", "delete_acl_user", "ensure_acl_user"]

_log = logging.getLogger(__name__)

#: Command rules for a typical service user, applied in this order.
#:
#: Every data type's reads and writes, key management (``EXPIRE``, ``DEL``),
#: pub/sub, ``MULTI``/``EXEC``, Lua scripts (whose ``redis.call`` is checked
#: against the caller's key patterns, so they cannot escape them) and
#: connection commands. Then ``-@admin -@dangerous`` take away what reaches
#: beyond one service: ``FLUSHALL``, ``FLUSHDB`` (it would wipe every
#: service's keys in a shared DB), ``SWAPDB``, ``MIGRATE``, ``CONFIG``,
#: ``CLIENT KILL``, ``DEBUG``, ``MONITOR``, ``KEYS`` and ``SORT``. The explicit
#: rules at the end:
#:
#: - ``+select``: already in ``@connection``; stated because every service's
#:   URL selects its DB number and must keep working if the categories change.
#: - ``+info``: ``@dangerous`` for what it reveals about the server, but
#:   health checks call it (Spring Boot's Redis health indicator runs
#:   ``INFO``); it shows no data and no secrets.
#: - ``-scan -randomkey``: key patterns do not filter their replies, so they
#:   would show every service's key names (which may hold ids or tokens).
#:   ``HSCAN``/``SSCAN``/``ZSCAN`` name their key and stay allowed; keep an
#:   index set of your keys instead of scanning.
#: - ``-pubsub|channels -pubsub|shardchannels``: list every service's channels.
#: - ``-client|tracking``: broadcast tracking reports changes to every key,
#:   whatever the user's patterns.
#: - ``-move``: moving keys between DBs is an admin's job (and with prefixes
#:   there is no reason to).
#: - ``-script|flush -script|kill``, ``-function|load -function|flush
#:   -function|delete -function|restore -function|kill``: scripts and
#:   functions are shared by the whole server, so one service could remove,
#:   replace or kill another's. ``EVAL``, ``EVALSHA`` and ``FCALL`` stay.
#: - ``-script|debug``: synchronous script debugging blocks the server.
DEFAULT_SERVICE_COMMANDS: tuple[str, ...] = (
    "+@read",
    "+@write",
    "+@keyspace",
    "+@string",
    "+@hash",
    "+@list",
    "+@set",
    "+@sortedset",
    "+@stream",
    "+@bitmap",
    "+@hyperloglog",
    "+@geo",
    "+@pubsub",
    "+@transaction",
    "+@connection",
    "+@scripting",
    "-@admin",
    "-@dangerous",
    "+select",
    "+info",
    "-scan",
    "-randomkey",
    "-pubsub|channels",
    "-pubsub|shardchannels",
    "-client|tracking",
    "-move",
    "-script|flush",
    "-script|kill",
    "-script|debug",
    "-function|load",
    "-function|flush",
    "-function|delete",
    "-function|restore",
    "-function|kill",
)

# Redis accepts almost any user name; these survive ACL LIST, ACL files and URLs.
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")

# ACL GETUSER values made hashable and comparable, whatever the client's decoding.
_Canonical: TypeAlias = str | tuple["_Canonical", ...]


def ensure_acl_user(
    client_or_config: redis.Redis | RedisConfig,
    username: str,
    password: str,
    *,
    commands: Sequence[str] = DEFAULT_SERVICE_COMMANDS,
    key_patterns: Sequence[str] | None = None,
    channels: Sequence[str] | None = None,
    key_prefix: str | None = None,
    dry_run: bool = False,
) -> Change:
    """Make ``username`` an enabled ACL user with exactly this password and these rules.

    ``key_prefix`` (``"board-service:"``, see :mod:`infra_lib.redis.keys`)
    confines the user's keys and channels to that prefix in every DB; it is
    what services should get. Without it, ``key_patterns`` and ``channels``
    are glob patterns without the ``~`` / ``&`` prefix (each ``("*",)``, all
    keys or channels, when not given).

    The password is sent only as the ``>password`` rule of ``ACL SETUSER``;
    it is never logged and is blanked out of error messages.

    ``ACL SETUSER`` runs only when something differs: the user is missing,
    disabled, has another password (Redis keeps only its SHA-256), or other
    rules. To compare rules, Redis itself normalises the wanted ones on a
    short-lived, disabled, password-less user, because the text ``ACL
    GETUSER`` shows is rewritten differently by each Redis version.

    With ``dry_run`` nothing is changed; the result says what would be.
    """
    _check_username(username)
    if not isinstance(password, str) or not password:
        raise ConfigError(f"the password of Redis ACL user {username!r} must not be empty.")
    if key_prefix is not None:
        if key_patterns is not None or channels is not None:
            raise ConfigError(
                f"Redis ACL user {username!r}: pass key_prefix or key_patterns/channels, not both."
            )
        pattern = f"{validate_key_prefix(key_prefix, test_session=True)}*"
        key_patterns, channels = (pattern,), (pattern,)
    rules = _rules(
        username,
        commands,
        ("*",) if key_patterns is None else key_patterns,
        ("*",) if channels is None else channels,
    )
    with (
        _client(client_or_config) as (client, config_user, where),
        translate_errors(
            where,
            f"manage ACL user {username!r}",
            username=config_user,
            secrets=[password, *_client_secrets(client_or_config)],
        ),
    ):
        current = _getuser(client, username)
        try:
            # Also the check that this admin may manage users at all, so a dry
            # run (and the planning before any change) finds it out.
            wanted = _normalised(client, rules)
        except redis.exceptions.NoPermissionError as exc:
            raise ProvisionError(
                _no_acl_management(where, config_user, username, rules, exc)
            ) from exc
        if (
            current is not None
            and _password_and_flags_match(current, password)
            and _rules_match(current, wanted)
        ):
            _log.debug("Redis ACL user %s is up to date", username)
            return Change.UNCHANGED
        if not dry_run:
            _setuser(client, username, ["reset", "on", f">{password}", *rules])
            _persist(client)
    change = Change.CREATED if current is None else Change.CHANGED
    if dry_run:
        return change
    _log.info("Redis ACL user %s %s", username, change.value)
    return change


def delete_acl_user(client_or_config: redis.Redis | RedisConfig, username: str) -> bool:
    """Delete ``username``; true if it existed. Its open connections are closed by Redis."""
    _check_username(username)
    with (
        _client(client_or_config) as (client, config_user, where),
        translate_errors(
            where,
            f"delete ACL user {username!r}",
            username=config_user,
            secrets=_client_secrets(client_or_config),
        ),
    ):
        deleted = client.acl_deluser(username) > 0
        if deleted:
            _persist(client)
    if deleted:
        _log.info("Redis ACL user %s deleted", username)
    return deleted


def _check_username(username: str) -> None:
    if not isinstance(username, str) or not _USERNAME.fullmatch(username):
        raise ConfigError(
            f"invalid Redis ACL user name {username!r}: use 1-128 letters, digits, "
            "'.', ':', '-' and '_', starting with a letter or digit."
        )
    if username == "default":
        # Rewriting `default` would lock out every client using REDIS_PASSWORD.
        raise ConfigError("the Redis 'default' user is the admin user; it is not managed here.")


def _rules(
    username: str,
    commands: Sequence[str],
    key_patterns: Sequence[str],
    channels: Sequence[str],
) -> list[str]:
    # A bare str is a Sequence too, and would be split into characters.
    for name, values in (
        ("commands", commands),
        ("key_patterns", key_patterns),
        ("channels", channels),
    ):
        if isinstance(values, str):
            raise ConfigError(f"{name} for Redis ACL user {username!r} must be a list, not a str.")
        for value in values:
            if not isinstance(value, str) or not value or any(ch.isspace() for ch in value):
                raise ConfigError(
                    f"invalid entry {value!r} in {name} for Redis ACL user {username!r}: "
                    "rules and patterns are non-empty and hold no whitespace."
                )
    return [
        *(f"~{pattern}" for pattern in key_patterns),
        *(f"&{channel}" for channel in channels),
        *commands,
    ]


@contextmanager
def _client(
    client_or_config: redis.Redis | RedisConfig,
) -> Iterator[tuple[redis.Redis, str | None, str]]:
    """The client to use, the user it logs in as, and ``host:port`` for messages."""
    if isinstance(client_or_config, RedisConfig):
        client = client_or_config.client(0, decode_responses=True)
        try:
            yield client, client_or_config.username, client_or_config.address
        finally:
            client.close()
        return
    kwargs = client_or_config.get_connection_kwargs()
    where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
    yield client_or_config, kwargs.get("username"), where


def _client_secrets(client_or_config: redis.Redis | RedisConfig) -> list[str | None]:
    if isinstance(client_or_config, RedisConfig):
        return [client_or_config.password]
    return [client_or_config.get_connection_kwargs().get("password")]


def _no_acl_management(
    where: str, admin: str | None, username: str, rules: Sequence[str], exc: Exception
) -> str:
    return (
        f"Redis at {where} does not let user {admin or 'default'!r} manage ACL users ({exc}); "
        "managed Redis such as ElastiCache keeps users to its own API. Nothing was changed. "
        f"Create user {username!r} there with the access string 'on {' '.join(rules)}' and "
        "give the service its password by configuration, or connect as a user that may run "
        "ACL SETUSER (REDIS_USERNAME)."
    )


def _persist(client: redis.Redis) -> None:
    """Write the users to the server's ACL file, when it has one.

    Users made with ACL SETUSER live in memory only; without this a Redis
    restart would lock every service out until the next provisioning. The
    compose stack configures ``aclfile``; a managed server may have none, or
    may refuse CONFIG, and then keeps users its own way.
    """
    try:
        reply = _command(client)("CONFIG", "GET", "aclfile")
    except redis.exceptions.ResponseError:
        _log.debug("CONFIG GET aclfile refused; not saving ACL users to a file")
        return
    # redis-py parses CONFIG GET into a dict; RESP3 or raw replies are a flat list.
    value: object = ""
    if isinstance(reply, dict):
        value = next(iter(reply.values()), "")
    elif isinstance(reply, list | tuple) and len(reply) >= 2:
        value = reply[1]
    if _text(value):
        _command(client)("ACL", "SAVE")


def _setuser(client: redis.Redis, username: str, rules: Sequence[str]) -> None:
    try:
        _command(client)("ACL", "SETUSER", username, *rules)
    except redis.exceptions.NoPermissionError:
        raise
    except redis.exceptions.ResponseError as exc:
        # SETUSER is all or nothing: a bad rule leaves the user as it was.
        # Redis names the rule it rejects; the password rule is never one.
        raise ConfigError(
            f"Redis rejected the ACL rules for user {username!r}: {exc}. Check commands, "
            "key_patterns and channels (e.g. '+@read', '-flushall', 'svc:*')."
        ) from exc


def _getuser(client: redis.Redis, username: str) -> dict[str, _Canonical] | None:
    reply = _command(client)("ACL", "GETUSER", username)
    if reply is None:
        return None
    if isinstance(reply, Mapping):
        items = list(reply.items())
    elif isinstance(reply, list | tuple):
        items = list(zip(reply[::2], reply[1::2], strict=True))
    else:
        raise TypeError(f"unexpected ACL GETUSER reply of type {type(reply).__name__}")
    return {_text(key): _canonical(value) for key, value in items}


def _normalised(client: redis.Redis, rules: Sequence[str]) -> dict[str, _Canonical]:
    """The ACL GETUSER view of ``rules``, as this server writes it."""
    # Disabled and without a password: nobody can log in as it, even if the
    # DELUSER below never runs.
    scratch = f"infra-acl-normalise-{secrets.token_hex(8)}"
    _setuser(client, scratch, ["reset", "off", *rules])
    try:
        wanted = _getuser(client, scratch)
    finally:
        client.acl_deluser(scratch)
    if wanted is None:
        raise ConfigError(f"Redis dropped the scratch ACL user {scratch!r} before it was read.")
    return wanted


def _password_and_flags_match(current: dict[str, _Canonical], password: str) -> bool:
    # Redis keeps the SHA-256 (hex) of each password, never the password.
    digest = hashlib.sha256(password.encode()).hexdigest()
    flags = current.get("flags", ())
    return current.get("passwords") == (digest,) and "on" in flags and "nopass" not in flags


def _rules_match(current: dict[str, _Canonical], wanted: dict[str, _Canonical]) -> bool:
    """Same rules and flags, apart from the password and on/off (the scratch user is off)."""

    def comparable(view: dict[str, _Canonical], state: str) -> dict[str, _Canonical]:
        out = {key: value for key, value in view.items() if key != "passwords"}
        out["flags"] = tuple(sorted(f for f in view.get("flags", ()) if f != state))
        return out

    return comparable(current, "on") == comparable(wanted, "off")


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _canonical(value: object) -> _Canonical:
    """Bytes or str, lists and maps of them, as hashable, comparable values."""
    if isinstance(value, Mapping):
        return tuple(sorted((_text(k), _canonical(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_canonical(item) for item in value)
    return _text(value)


def _command(client: redis.Redis) -> Callable[..., object]:
    # redis-py's execute_command is untyped; its reply here is parsed by hand.
    return cast("Callable[..., object]", client.execute_command)
