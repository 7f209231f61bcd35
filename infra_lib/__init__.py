"""infra_lib: provision, use, back up and smoke-test a team's backing services.

Public names are re-exported here and loaded on first use, so ``import
infra_lib`` stays cheap: a service that only needs one helper does not pay
for python-on-whales, boto3, minio or livekit.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    "InfraError": "infra_lib.errors",
    "CapacityExhausted": "infra_lib.errors",
    "AllocationConflict": "infra_lib.errors",
    "ProvisionError": "infra_lib.errors",
    "ManifestError": "infra_lib.errors",
    "ConfigError": "infra_lib.errors",
    "EnvFileExists": "infra_lib.errors",
    "DockerUnavailable": "infra_lib.errors",
    "PortInUse": "infra_lib.errors",
    "StackError": "infra_lib.errors",
    "ServiceUnhealthy": "infra_lib.errors",
    "ServiceUnavailable": "infra_lib.errors",
    "StackSettings": "infra_lib.stack.settings",
    "load_stack_settings": "infra_lib.stack.settings",
    "Stack": "infra_lib.stack.compose",
    "StackPaths": "infra_lib.stack.compose",
    "ServiceStatus": "infra_lib.stack.compose",
    "TurnCredentials": "infra_lib.turn",
    "turn_credentials": "infra_lib.turn",
}

__all__ = [
    "AllocationConflict",
    "CapacityExhausted",
    "ConfigError",
    "DockerUnavailable",
    "EnvFileExists",
    "InfraError",
    "ManifestError",
    "PortInUse",
    "ProvisionError",
    "ServiceStatus",
    "ServiceUnavailable",
    "ServiceUnhealthy",
    "Stack",
    "StackError",
    "StackPaths",
    "StackSettings",
    "TurnCredentials",
    "__version__",
    "load_stack_settings",
    "turn_credentials",
]

if TYPE_CHECKING:
    from infra_lib.errors import (
        AllocationConflict,
        CapacityExhausted,
        ConfigError,
        DockerUnavailable,
        EnvFileExists,
        InfraError,
        ManifestError,
        PortInUse,
        ProvisionError,
        ServiceUnavailable,
        ServiceUnhealthy,
        StackError,
    )
    from infra_lib.stack.compose import ServiceStatus, Stack, StackPaths
    from infra_lib.stack.settings import StackSettings, load_stack_settings
    from infra_lib.turn import TurnCredentials, turn_credentials


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'infra_lib' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
