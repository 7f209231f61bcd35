"""Failure experiments on the stack's own containers, always rolled back.

An experiment applies one fault to one service's container (a crash, a
pause, lower CPU or memory limits, load inside it, a full data volume), to
the network path to it (through the ``chaos`` profile's proxy), or to its
routes through the gateway, for a while, probes the service over its own
protocol (or through the gateway) the whole time, and undoes the
fault at the end: on normal end, on error and on Ctrl-C. The fault is
written to a ledger before it is applied, so one left behind by a run that
died (SIGKILL, a lost terminal) is found and undone by the next run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra_lib._lazy import lazy_exports

# name -> module that defines it; `inv status` needs only disk.py, not the
# experiments' drivers.
_EXPORTS: dict[str, str] = {
    "CONTAINER_FAULTS": "infra_lib.chaos.container",
    "FAULTS": "infra_lib.chaos.container",
    "Event": "infra_lib.chaos.container",
    "ExperimentReport": "infra_lib.chaos.container",
    "FaultLedger": "infra_lib.chaos.container",
    "LeftoverFault": "infra_lib.chaos.container",
    "not_local": "infra_lib.chaos.container",
    "recover": "infra_lib.chaos.container",
    "require_local": "infra_lib.chaos.container",
    "run_experiment": "infra_lib.chaos.container",
    "DISK_FAULTS": "infra_lib.chaos.disk",
    "VolumeUsage": "infra_lib.chaos.disk",
    "volume_usage": "infra_lib.chaos.disk",
    "GATEWAY_FAULTS": "infra_lib.chaos.gateway",
    "NETWORK_FAULTS": "infra_lib.chaos.network",
    "NetworkParams": "infra_lib.chaos.network",
    "Toxiproxy": "infra_lib.chaos.network",
    "proxied_settings": "infra_lib.chaos.network",
    "RESOURCE_FAULTS": "infra_lib.chaos.resources",
    "ResourceParams": "infra_lib.chaos.resources",
}

__all__ = [
    "CONTAINER_FAULTS",
    "DISK_FAULTS",
    "FAULTS",
    "GATEWAY_FAULTS",
    "NETWORK_FAULTS",
    "RESOURCE_FAULTS",
    "Event",
    "ExperimentReport",
    "FaultLedger",
    "LeftoverFault",
    "NetworkParams",
    "ResourceParams",
    "Toxiproxy",
    "VolumeUsage",
    "not_local",
    "proxied_settings",
    "recover",
    "require_local",
    "run_experiment",
    "volume_usage",
]

if TYPE_CHECKING:
    from infra_lib.chaos.container import (
        CONTAINER_FAULTS,
        FAULTS,
        Event,
        ExperimentReport,
        FaultLedger,
        LeftoverFault,
        not_local,
        recover,
        require_local,
        run_experiment,
    )
    from infra_lib.chaos.disk import DISK_FAULTS, VolumeUsage, volume_usage
    from infra_lib.chaos.gateway import GATEWAY_FAULTS
    from infra_lib.chaos.network import NETWORK_FAULTS, NetworkParams, Toxiproxy, proxied_settings
    from infra_lib.chaos.resources import RESOURCE_FAULTS, ResourceParams

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
