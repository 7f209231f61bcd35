"""Redis: connection config, one DB number per service, per-service ACL users.

- :class:`RedisConfig` (``config.py``): host, credentials, TLS; builds URLs and clients.
- :class:`RedisDbAllocator` (``allocator.py``): atomic, stable DB numbers per service.
- :func:`ensure_acl_user` (``acl.py``): an idempotent ACL user per service.
- :func:`validate_key_prefix` (``keys.py``): the key prefix that confines a service.

Names are loaded on first use: ``from infra_lib.redis import RedisConfig``
does not import redis-py, so a service that only needs a URL does not pay
for the driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra_lib._lazy import lazy_exports

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    "RedisConfig": "infra_lib.redis.config",
    "Allocation": "infra_lib.redis.allocator",
    "DEFAULT_REGISTRY_KEY": "infra_lib.redis.allocator",
    "RedisDbAllocator": "infra_lib.redis.allocator",
    "validate_service_name": "infra_lib.names",
    "DEFAULT_SERVICE_COMMANDS": "infra_lib.redis.acl",
    "Change": "infra_lib.redis.acl",
    "delete_acl_user": "infra_lib.redis.acl",
    "ensure_acl_user": "infra_lib.redis.acl",
    "RESERVED_PREFIX": "infra_lib.redis.keys",
    "default_key_prefix": "infra_lib.redis.keys",
    "validate_key_prefix": "infra_lib.redis.keys",
}

__all__ = [
    "DEFAULT_REGISTRY_KEY",
    "DEFAULT_SERVICE_COMMANDS",
    "RESERVED_PREFIX",
    "Allocation",
    "Change",
    "RedisConfig",
    "RedisDbAllocator",
    "default_key_prefix",
    "delete_acl_user",
    "ensure_acl_user",
    "validate_key_prefix",
    "validate_service_name",
]

if TYPE_CHECKING:
    from infra_lib.names import validate_service_name
    from infra_lib.redis.acl import (
        DEFAULT_SERVICE_COMMANDS,
        Change,
        delete_acl_user,
        ensure_acl_user,
    )
    from infra_lib.redis.allocator import DEFAULT_REGISTRY_KEY, Allocation, RedisDbAllocator
    from infra_lib.redis.config import RedisConfig
    from infra_lib.redis.keys import RESERVED_PREFIX, default_key_prefix, validate_key_prefix


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
