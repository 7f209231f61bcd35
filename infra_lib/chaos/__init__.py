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
