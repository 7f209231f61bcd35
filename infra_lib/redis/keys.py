"""Key prefixes: each service's own slice of every Redis DB.

Redis ACLs cannot pin a user to a DB number, but they can pin it to key and
channel patterns. A service's ACL user is therefore allowed ``~<prefix>*``
and ``&<prefix>*`` only, and its keys and pub/sub channels must start with
its prefix (``REDIS_KEY_PREFIX`` in its env file) in whichever DB it uses.

``infra:`` is this library's own namespace (the DB-number registry, test
leases, test sessions' prefixes); no service prefix may reach into it, and no
two service prefixes may overlap, or one service's pattern would match the
other's keys. Importing this module does not import redis-py.
"""

from __future__ import annotations

import re

from infra_lib.errors import ConfigError

__all__ = [
    "RESERVED_PREFIX",
    "TEST_PREFIX",
    "default_key_prefix",
    "overlapping",
    "prefix_pattern",
    "validate_key_prefix",
]

#: The library's own namespace; the DB registry is ``infra:redis-db-registry``.
RESERVED_PREFIX = "infra:"

#: Where test sessions' prefixes live (``infra:test:<tag>:``), inside the reserved namespace.
TEST_PREFIX = f"{RESERVED_PREFIX}test:"

# Segments of letters, digits, '.', '_' and '-', each followed by ':'. No glob
# characters (* ? [ ] \), which would widen the ACL pattern built from it, and
# nothing a URL, an ACL file or a shell would need to quote.
_PREFIX = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9._-]{0,63}:){1,4}")


def default_key_prefix(service: str) -> str:
    """The prefix a service gets when the manifest names none: ``<service>:``."""
    return f"{service}:"


def prefix_pattern(prefix: str) -> str:
    """The SCAN MATCH glob for every key under ``prefix`` (its own glob characters escaped)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"


def validate_key_prefix(prefix: str, *, test_session: bool = False) -> str:
    """Return ``prefix`` if it is a usable key prefix, else raise :class:`ConfigError`.

    A prefix is one to four ``name:`` segments (``board:``, ``collab:board:``).
    It must not overlap :data:`RESERVED_PREFIX`; with ``test_session`` it may
    also be a test session's own prefix under :data:`TEST_PREFIX`, which lies
    beside the registry's keys, not over them.
    """
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ConfigError(
            f"invalid Redis key prefix {prefix!r}: use one to four segments of letters, "
            "digits, '.', '_' and '-', each ending in ':' (e.g. 'board:')."
        )
    own_test_prefix = test_session and prefix.startswith(TEST_PREFIX) and prefix != TEST_PREFIX
    if overlapping(prefix, RESERVED_PREFIX) and not own_test_prefix:
        raise ConfigError(
            f"Redis key prefix {prefix!r} overlaps {RESERVED_PREFIX!r}, the namespace of the "
            "DB registry and test sessions; pick another one."
        )
    return prefix


def overlapping(first: str, second: str) -> bool:
    """Whether ``first*`` and ``second*`` can match the same key."""
    return first.startswith(second) or second.startswith(first)
