"""Validation of the names a manifest gives to services, databases and roles.

Names are checked before any server sees them and rejected, never mangled:
a name that needs quoting or would be truncated is a typo waiting to be a
second database.
"""

from __future__ import annotations

import re

from infra_lib.errors import ConfigError

__all__ = ["url_host", "validate_pg_identifier", "validate_service_name"]

# PostgreSQL truncates identifiers to NAMEDATALEN - 1 = 63 bytes.
PG_IDENTIFIER_MAX_BYTES = 63
SERVICE_NAME_MAX = 63

_PG_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
# Names PostgreSQL refuses for roles even when quoted.
_RESERVED_ROLE_NAMES = frozenset({"public", "none", "current_user", "session_user", "current_role"})
_SERVICE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def validate_pg_identifier(name: str, *, what: str = "identifier") -> str:
    """Return ``name`` if it is a safe PostgreSQL identifier, else raise ConfigError.

    Allowed: lowercase ASCII letters, digits and ``_``, not starting with a
    digit, at most 63 bytes, not starting with ``pg_`` (reserved for system
    objects).
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{what} must be a non-empty string")
    if len(name.encode()) > PG_IDENTIFIER_MAX_BYTES:
        raise ConfigError(
            f"{what} {name!r} is {len(name.encode())} bytes; PostgreSQL allows at most "
            f"{PG_IDENTIFIER_MAX_BYTES} and would silently truncate it"
        )
    if not _PG_IDENTIFIER.fullmatch(name):
        raise ConfigError(
            f"{what} {name!r} may hold only lowercase letters, digits and '_', "
            "and must not start with a digit"
        )
    if name.startswith("pg_"):
        raise ConfigError(f"{what} {name!r} must not start with 'pg_' (reserved by PostgreSQL)")
    if name in _RESERVED_ROLE_NAMES:
        raise ConfigError(f"{what} {name!r} is reserved by PostgreSQL")
    return name


def validate_service_name(name: str) -> str:
    """Return ``name`` if it is a valid service name, else raise ConfigError.

    Service names become file names, Redis registry entries and ACL user
    names, so they are kept to lowercase letters, digits, ``-`` and ``_``.
    """
    if (
        not isinstance(name, str)
        or not name
        or len(name) > SERVICE_NAME_MAX
        or not _SERVICE_NAME.fullmatch(name)
    ):
        raise ConfigError(
            f"invalid service name {name!r}: use 1-{SERVICE_NAME_MAX} characters, lowercase "
            "letters, digits, '-' and '_', starting with a letter or digit"
        )
    return name


def url_host(host: str) -> str:
    """``host`` as it goes in a URL.

    An IPv6 literal gets brackets, or its colons would read as the port.
    """
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
