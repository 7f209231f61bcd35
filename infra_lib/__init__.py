"""infra_lib: provision, use, back up and smoke-test a team's backing services.

Public names are re-exported here and loaded on first use, so ``import
infra_lib`` stays cheap: a service that only needs one helper does not pay
for python-on-whales, boto3, minio or livekit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra_lib._lazy import lazy_exports

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    "PostgresConfig": "infra_lib.postgres.config",
    "RedisConfig": "infra_lib.redis.config",
    "S3Config": "infra_lib.storage.config",
    "LiveKitConfig": "infra_lib.livekit.config",
    "TokenFactory": "infra_lib.livekit.tokens",
    "ServiceSettings": "infra_lib.service",
    "Manifest": "infra_lib.manifest",
    "load_manifest": "infra_lib.manifest",
    "provision": "infra_lib.provisioning",
    "ProvisionReport": "infra_lib.provisioning",
    "InvalidObjectKey": "infra_lib.errors",
    "LiveKitError": "infra_lib.errors",
    "WebhookRejected": "infra_lib.errors",
    "BackupError": "infra_lib.errors",
    "BackupCorrupt": "infra_lib.errors",
    "RestoreRefused": "infra_lib.errors",
    "InfraError": "infra_lib.errors",
    "CapacityExhausted": "infra_lib.errors",
    "AllocationConflict": "infra_lib.errors",
    "ProvisionError": "infra_lib.errors",
    "ManifestError": "infra_lib.errors",
    "ConfigError": "infra_lib.errors",
    "EnvFileExists": "infra_lib.errors",
    "ForeignProject": "infra_lib.errors",
    "MissingExtra": "infra_lib.errors",
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
    "MetricsEndpoint": "infra_lib.manifest",
    "MetricsStore": "infra_lib.observability.store",
}

__all__ = [
    "AllocationConflict",
    "BackupCorrupt",
    "BackupError",
    "CapacityExhausted",
    "ConfigError",
    "DockerUnavailable",
    "EnvFileExists",
    "ForeignProject",
    "InfraError",
    "InvalidObjectKey",
    "LiveKitConfig",
    "LiveKitError",
    "Manifest",
    "ManifestError",
    "MetricsEndpoint",
    "MetricsStore",
    "MissingExtra",
    "PortInUse",
    "PostgresConfig",
    "ProvisionError",
    "ProvisionReport",
    "RedisConfig",
    "RestoreRefused",
    "S3Config",
    "ServiceSettings",
    "ServiceStatus",
    "ServiceUnavailable",
    "ServiceUnhealthy",
    "Stack",
    "StackError",
    "StackPaths",
    "StackSettings",
    "TokenFactory",
    "TurnCredentials",
    "WebhookRejected",
    "__version__",
    "load_manifest",
    "load_stack_settings",
    "provision",
    "turn_credentials",
]

if TYPE_CHECKING:
    from infra_lib.errors import (
        AllocationConflict,
        BackupCorrupt,
        BackupError,
        CapacityExhausted,
        ConfigError,
        DockerUnavailable,
        EnvFileExists,
        ForeignProject,
        InfraError,
        InvalidObjectKey,
        LiveKitError,
        ManifestError,
        MissingExtra,
        PortInUse,
        ProvisionError,
        RestoreRefused,
        ServiceUnavailable,
        ServiceUnhealthy,
        StackError,
        WebhookRejected,
    )
    from infra_lib.livekit.config import LiveKitConfig
    from infra_lib.livekit.tokens import TokenFactory
    from infra_lib.manifest import Manifest, MetricsEndpoint, load_manifest
    from infra_lib.observability.store import MetricsStore
    from infra_lib.postgres.config import PostgresConfig
    from infra_lib.provisioning import ProvisionReport, provision
    from infra_lib.redis.config import RedisConfig
    from infra_lib.service import ServiceSettings
    from infra_lib.stack.compose import ServiceStatus, Stack, StackPaths
    from infra_lib.stack.settings import StackSettings, load_stack_settings
    from infra_lib.storage.config import S3Config
    from infra_lib.turn import TurnCredentials, turn_credentials

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
