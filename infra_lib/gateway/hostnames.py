"""Host names the gateway serves and its certificate covers."""

from __future__ import annotations

import ipaddress
import re

__all__ = ["check_dns_name", "is_dns_name", "is_ip", "is_local_name"]

_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def check_dns_name(value: str, what: str) -> str:
    """``value`` if it is a lowercase DNS name (``localhost``, ``dev.example.com``).

    Raises ValueError naming ``what``: the name goes into nginx's
    ``server_name`` and the certificate, so nothing else may pass.
    """
    if len(value) > 253 or not all(_LABEL.fullmatch(label) for label in value.split(".")):
        raise ValueError(
            f"{what} {value!r} must be a lowercase DNS name such as 'localhost' or "
            "'dev.example.com' (letters, digits, '-', dot-separated)"
        )
    return value


def is_dns_name(value: str) -> bool:
    """Whether :func:`check_dns_name` accepts ``value``."""
    try:
        check_dns_name(value, "name")
    except ValueError:
        return False
    return True


def is_ip(value: str) -> bool:
    """Whether ``value`` is an IPv4 or IPv6 address literal."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_local_name(value: str) -> bool:
    """``localhost``, a name under it, or an IP address: no HSTS for these.

    A browser remembers HSTS per name; on ``localhost`` it would force HTTPS
    onto every other development server on the machine.
    """
    return value == "localhost" or value.endswith(".localhost") or is_ip(value)
