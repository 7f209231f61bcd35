"""Experiments: container, network, resource and disk faults.

The network faults live in :mod:`infra_lib.chaos.network`, the resource
faults in :mod:`infra_lib.chaos.resources` and the disk fault in
:mod:`infra_lib.chaos.disk`; this module runs every kind the
same way. Each fault is recorded in a
:class:`FaultLedger` before it is applied and cleared only once it is undone,
so the ledger on disk is the truth about what may still be broken.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra_lib.chaos.disk import (
    DISK_FAULTS,
    apply_disk_fault,
    prepare_disk_fault,
    undo_disk_fault,
)
from infra_lib.chaos.gateway import (
    GATEWAY_FAULTS,
    GatewayTarget,
    apply_gateway_fault,
    gateway_paths,
    gateway_target,
    prepare_gateway_fault,
    probe_through_gateway,
    undo_gateway_fault,
)
from infra_lib.chaos.network import (
    NETWORK_FAULTS,
    NetworkParams,
    Toxiproxy,
    apply_network_fault,
    proxied_settings,
    undo_network_fault,
)
from infra_lib.chaos.resources import (
    RESOURCE_FAULTS,
    ResourceParams,
    apply_resource_fault,
    prepare_resource_fault,
    undo_resource_fault,
)
from infra_lib.chaos.window import Window
from infra_lib.errors import ConfigError, InfraError, ServiceUnavailable, StackError
from infra_lib.stack.envfile import make_private_dirs, write_private_file

if TYPE_CHECKING:
    from python_on_whales import Container

    from infra_lib.manifest import Manifest
    from infra_lib.stack.compose import Stack
    from infra_lib.stack.settings import StackSettings

#: The container faults, with what each does to the service's container.
CONTAINER_FAULTS: dict[str, str] = {
    "pause": "freeze every process of the container (docker pause); connections hang",
    "stop": "stop the container (docker stop); connections are refused",
    "kill": "SIGKILL the server process, as a crash would; the restart policy brings it back",
    "restart": "restart the container (docker restart): a clean stop, then a start",
    "restart-loop": "SIGKILL the server process every --every seconds; the restart "
    "policy brings it back each time, slower each time",
}

#: Every fault: container, network, resource, disk, then gateway faults.
FAULTS: dict[str, str] = {
    **CONTAINER_FAULTS,
    **NETWORK_FAULTS,
    **RESOURCE_FAULTS,
    **DISK_FAULTS,
    **GATEWAY_FAULTS,
}

#: The gateway's service in compose/gateway.yaml (profile ``gateway``).
GATEWAY_SERVICE = "gateway"

#: The proxy's service in compose/chaos.yaml (profile ``chaos``).
PROXY_SERVICE = "toxiproxy"

#: Longest experiment accepted: a typo in --duration should not freeze a service for a day.
MAX_DURATION = 3600.0


@dataclass(frozen=True)
class Event:
    """One line of an experiment's timeline, ``at`` seconds after the fault."""

    at: float
    kind: str
    detail: str


@dataclass
class ExperimentReport:
    """What one experiment did and what the probes saw."""

    fault: str
    service: str
    duration: float
    events: list[Event] = field(default_factory=list)
    #: Whether the service answered its probe again after the rollback.
    recovered: bool = False
    #: A fault left by an earlier run that this run undid first, if any.
    leftover: str | None = None
    #: When the fault was applied (Unix seconds): the events' zero.
    started_at: float = 0.0
    #: What the observability layer's stores saw, when it was asked (see :mod:`.window`).
    window: Window | None = None

    def first(self, kind: str) -> Event | None:
        """The first event of ``kind``, if any."""
        return next((e for e in self.events if e.kind == kind), None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form, for ``--json``."""
        return asdict(self)


@dataclass(frozen=True)
class LeftoverFault:
    """A fault as the ledger records it before it is applied."""

    fault: str
    service: str
    container_id: str
    project: str
    started: str
    runner_pid: int
    #: What the rollback needs beyond the container (a resource fault's old limits).
    undo: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for messages."""
        return (
            f"{self.fault} of {self.service} (container {self.container_id[:12]}, "
            f"started {self.started} by process {self.runner_pid})"
        )


class FaultLedger:
    """The file that records an applied fault until it is undone (mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, fault: LeftoverFault) -> None:
        """Write ``fault`` down; done before the fault is applied."""
        make_private_dirs(self.path.parent)
        write_private_file(self.path, json.dumps(asdict(fault), indent=2) + "\n")

    def read(self) -> LeftoverFault | None:
        """The recorded fault, or ``None`` when nothing is outstanding."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return LeftoverFault(**data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"the fault ledger {self.path} is unreadable ({exc}); check the stack with "
                "`inv status` (`docker unpause`/`inv up` undo any fault), then delete the file"
            ) from exc

    def clear(self) -> None:
        """Forget the fault; done only once it is undone."""
        self.path.unlink(missing_ok=True)


def _undo(stack: Stack, fault: LeftoverFault) -> str:
    """Put the container (or the proxy) back as it was; say what was done."""
    from python_on_whales.exceptions import NoSuchContainer

    if fault.fault in NETWORK_FAULTS:
        return _undo_network(stack, fault)
    if fault.fault in RESOURCE_FAULTS:
        return undo_resource_fault(stack, fault.fault, fault.container_id, fault.undo)
    if fault.fault in DISK_FAULTS:
        return undo_disk_fault(stack, fault.container_id, fault.undo)
    if fault.fault in GATEWAY_FAULTS:
        return undo_gateway_fault(stack, fault.undo)
    try:
        container = stack.docker.container.inspect(fault.container_id)
    except NoSuchContainer:
        return "its container is gone; `inv up` makes a new one"
    state = container.state
    if state.paused:
        stack.docker.container.unpause(container)
        return "unpaused"
    if not state.running:
        stack.docker.container.start(container)
        return "started"
    return "already running"


def _undo_network(stack: Stack, fault: LeftoverFault) -> str:
    from python_on_whales.exceptions import NoSuchContainer

    try:
        return undo_network_fault(Toxiproxy.from_settings(stack.settings), fault.service)
    except ServiceUnavailable:
        try:
            state = stack.docker.container.inspect(fault.container_id).state
        except NoSuchContainer:
            return "the proxy's container is gone; a new one starts with no fault"
        if state.running and not state.paused:
            raise
        # Its proxies come from a file at start: a stopped proxy holds no fault.
        return f"the proxy is {state.status}; it starts again with no fault"


def recover(stack: Stack, ledger: FaultLedger) -> str | None:
    """Undo a fault an earlier run left behind; a message, or ``None`` if there was none."""
    leftover = ledger.read()
    if leftover is None:
        return None
    if leftover.project != stack.project_name:
        raise ConfigError(
            f"the fault ledger {ledger.path} names project {leftover.project!r}, not "
            f"{stack.project_name!r}; run with that project's env file"
        )
    done = _undo(stack, leftover)
    ledger.clear()
    return f"undid a fault left by an earlier run: {leftover.describe()}: {done}"


def _kill(stack: Stack, container: Container) -> str:
    """SIGKILL the container's main process from outside; fall back to ``docker kill``.

    ``docker kill`` counts as a deliberate stop and the restart policy ignores
    it; a crash does not. With the engine on this host the process is
    killed by its host PID, which is what a crash looks like to Docker.
    """
    pid = int(container.state.pid or 0)
    cgroup = Path(f"/proc/{pid}/cgroup")
    try:
        if pid > 0 and container.id in cgroup.read_text(encoding="utf-8"):
            os.kill(pid, signal.SIGKILL)
            return "server process killed (SIGKILL); the restart policy brings it back"
    except OSError:
        pass
    stack.docker.container.kill(container)
    return "docker kill (the engine is not on this host); the rollback starts it again"


@dataclass(frozen=True)
class _Knobs:
    network: NetworkParams
    resources: ResourceParams
    duration: float


def _apply(stack: Stack, fault: LeftoverFault, container: Container, knobs: _Knobs) -> str:
    if fault.fault in DISK_FAULTS:
        return apply_disk_fault(stack, container, fault.undo)
    if fault.fault in GATEWAY_FAULTS:
        return apply_gateway_fault(stack, fault.undo)
    return _apply_fault(stack, fault.fault, fault.service, container, knobs)


def _apply_fault(
    stack: Stack, fault: str, service: str, container: Container, knobs: _Knobs
) -> str:
    if fault in NETWORK_FAULTS:
        api = Toxiproxy.from_settings(stack.settings)
        return apply_network_fault(api, fault, service, knobs.network)
    if fault in RESOURCE_FAULTS:
        return apply_resource_fault(stack, fault, container, knobs.resources, knobs.duration)
    if fault == "restart":
        stack.docker.container.restart(container, time=10)
        return "container restarted"
    if fault == "pause":
        stack.docker.container.pause(container)
        return "container paused"
    if fault == "stop":
        stack.docker.container.stop(container, time=10)
        return "container stopped"
    return _kill(stack, container)


def _kill_again(stack: Stack, container_id: str) -> str:
    """The next kill of a restart loop, once the restart policy has brought it back."""
    container = stack.docker.container.inspect(container_id)
    if not container.state.running:
        return f"not killed again: still {container.state.status} (the restart policy waits)"
    return _kill(stack, container)


class _BoundedProbe:
    """A probe that gives up after ``timeout`` even when the driver would not.

    A paused server accepts the TCP connection and then says nothing; a
    driver's own retries then hold a probe for many times its timeout. The
    check runs in a daemon thread, and while one still hangs no second one
    starts, so a long pause does not pile threads up.
    """

    def __init__(self, check: Callable[[], object], service: str, timeout: float) -> None:
        self._check = check
        self._service = service
        self._timeout = timeout
        self._pending: threading.Thread | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._check()
            self._error = None
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._error = exc

    def __call__(self) -> None:
        if self._pending is not None and self._pending.is_alive():
            raise ServiceUnavailable(f"{self._service}: no answer yet", service=self._service)
        self._error = None
        self._pending = threading.Thread(target=self._run, daemon=True)
        self._pending.start()
        self._pending.join(self._timeout)
        if self._pending.is_alive():
            raise ServiceUnavailable(
                f"{self._service} gave no answer within {self._timeout:g} s",
                service=self._service,
            )
        if self._error is not None:
            raise self._error


def _prober(
    stack: Stack,
    service: str,
    timeout: float,
    settings: StackSettings | None = None,
    *,
    gateway: GatewayTarget | None = None,
) -> Callable[[], None]:
    """A function that raises when ``service`` does not answer within ``timeout``.

    ``settings`` says where to reach it (the proxy's port for a network
    fault); with ``gateway`` the service is asked through the gateway there,
    as a browser would.
    """
    from infra_lib.stack.probes import PROBES

    if gateway is not None:
        target = gateway
        ca_file = gateway_paths(stack).ca_cert
        return _BoundedProbe(
            lambda: probe_through_gateway(stack.settings, ca_file, target, timeout=timeout),
            service,
            timeout,
        )

    check = PROBES.get(service)
    if check is None:

        def running() -> None:
            # Published nowhere: its container's state is all there is to see.
            state = stack.container(service).state
            if not state.running or state.paused:
                raise ServiceUnavailable(f"{service} is {state.status}", service=service)

        return _BoundedProbe(running, service, timeout)
    where = settings or stack.settings
    return _BoundedProbe(lambda: check(where, timeout=timeout), service, timeout)


def run_experiment(
    stack: Stack,
    ledger: FaultLedger,
    fault: str,
    service: str,
    *,
    duration: float,
    interval: float = 0.25,
    recovery_timeout: float = 90.0,
    network: NetworkParams | None = None,
    resources: ResourceParams | None = None,
    every: float = 5.0,
    size_mb: int = 256,
    manifest: Manifest | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> ExperimentReport:
    """Apply ``fault`` to ``service`` for ``duration`` seconds, probing it, then undo it.

    A network fault acts on the proxy in front of ``service`` (``network``
    holds its values) and the probe goes through that proxy, as a client
    routed through it would; a container fault acts on ``service``'s own
    container; a resource fault changes its limits (``resources``) or loads
    it; ``restart-loop`` kills its server every ``every`` seconds;
    ``disk-full`` fills its data volume with a file of at most ``size_mb``
    MB, refusing a volume with more room than that; ``gateway-502`` points
    the gateway's routes to ``service`` (from ``manifest``, or MinIO's and
    LiveKit's names) at nothing, and the probe goes through the gateway. A fault
    left by an earlier run is undone first. The rollback runs on
    every way out (normal end, error, KeyboardInterrupt); if this process is
    killed instead, the ledger keeps the fault for :func:`recover`.
    """
    if fault not in FAULTS:
        raise ConfigError(f"unknown fault {fault!r}; use one of: {', '.join(FAULTS)}")
    if not 0 < duration <= MAX_DURATION:
        raise ConfigError(f"--duration must be between 0 and {MAX_DURATION:.0f} seconds")
    network = network or NetworkParams()
    resources = resources or ResourceParams()
    settings = None
    if fault in NETWORK_FAULTS:
        network.check()
        settings = proxied_settings(stack.settings, service)
    if fault in RESOURCE_FAULTS:
        resources.check()
    if fault == "restart-loop" and not 1 <= every <= duration:
        raise ConfigError(f"--every must be between 1 s and --duration ({duration:g} s)")
    report = ExperimentReport(fault, service, duration)
    report.leftover = recover(stack, ledger)
    container = _target(stack, fault, service)
    undo: dict[str, Any] = {}
    if fault in RESOURCE_FAULTS:
        undo = prepare_resource_fault(stack, fault, container)
    elif fault in DISK_FAULTS:
        undo = prepare_disk_fault(stack, service, container, size_mb)
    timeout = max(0.5, min(2.0, interval * 4))
    gateway = None
    if fault in GATEWAY_FAULTS:
        undo = prepare_gateway_fault(stack, manifest, service, timeout=max(timeout, 5.0))
        gateway = gateway_target(stack.settings, manifest, service)
    check = _prober(stack, service, timeout=timeout, settings=settings, gateway=gateway)
    started = time.monotonic()
    report.started_at = time.time()

    def note(kind: str, detail: str) -> None:
        event = Event(round(time.monotonic() - started, 3), kind, detail)
        report.events.append(event)
        if on_event is not None:
            on_event(event)

    applied = LeftoverFault(
        fault,
        service,
        str(container.id),
        stack.project_name,
        datetime.now(UTC).isoformat(timespec="seconds"),
        os.getpid(),
        undo,
    )
    ledger.record(applied)
    try:
        restarts = int(container.restart_count or 0)
        knobs = _Knobs(network, resources, duration)
        note("applied", _apply(stack, applied, container, knobs))
        failing = False
        # The fault stays on for `duration` once it is on: applying some
        # (nginx -t and a reload, writing a filler) takes seconds itself.
        on_since = time.monotonic()
        next_kill = every
        while time.monotonic() - on_since < duration:
            failing = _watch(check, failing, note)
            if fault == "restart-loop" and time.monotonic() - on_since >= next_kill:
                next_kill += every
                note("applied", _kill_again(stack, container.id))
            time.sleep(interval)
        now = int(stack.docker.container.inspect(container.id).restart_count or 0)
        if now > restarts:
            note("restarted", f"by its restart policy ({now - restarts} time(s))")
    finally:
        note("rolled_back", _undo(stack, applied))
        ledger.clear()
    deadline = time.monotonic() + recovery_timeout
    while True:
        try:
            check()
        except (InfraError, OSError) as exc:
            if time.monotonic() >= deadline:
                note("not_recovered", f"still failing after {recovery_timeout:.0f} s: {exc}")
                return report
            time.sleep(interval)
            continue
        report.recovered = True
        note("recovered", "probe answered")
        return report


def _is_loopback(host: str) -> bool:
    import ipaddress

    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    # All interfaces is how a developer shares a stack on a LAN, still theirs.
    return address.is_loopback or address.is_unspecified


def not_local(settings: StackSettings, environ: Mapping[str, str]) -> list[str]:
    """Why this stack may not be a local one; empty when it is.

    The faults act on whatever engine and servers the settings reach: a
    ``DOCKER_HOST`` on another machine, or servers outside this stack, mean
    an experiment could hit something other people use.
    """
    from urllib.parse import urlsplit

    reasons = []
    docker_host = environ.get("DOCKER_HOST", "")
    remote_engine = docker_host and not docker_host.startswith(("unix://", "npipe://"))
    if remote_engine and not _is_loopback(urlsplit(docker_host).hostname or ""):
        reasons.append(f"DOCKER_HOST={docker_host} is the engine of another machine")
    for name in ("postgres_host", "redis_host"):
        value = getattr(settings, name)
        if value and not _is_loopback(value):
            reasons.append(f"{name.upper()}={value} is a server outside this stack")
    if settings.s3_endpoint and not _is_loopback(urlsplit(settings.s3_endpoint).hostname or ""):
        reasons.append(f"S3_ENDPOINT={settings.s3_endpoint} is storage outside this stack")
    if not _is_loopback(settings.infra_public_host):
        reasons.append(
            f"INFRA_PUBLIC_HOST={settings.infra_public_host} is not this machine's loopback"
        )
    return reasons


def require_local(
    settings: StackSettings, environ: Mapping[str, str], *, yes_production: bool
) -> None:
    """Refuse an experiment on a stack that is not local, unless told it is meant."""
    reasons = not_local(settings, environ)
    if reasons and not yes_production:
        raise ConfigError(
            "this does not look like a local stack: "
            + "; ".join(reasons)
            + ". Failure experiments break things on purpose; give --yes-production "
            "if that is what you mean"
        )


def _target(stack: Stack, fault: str, service: str) -> Container:
    """The running container the fault goes on: the service's, the proxy's or the gateway's."""
    name, up = service, "`inv up`"
    if fault in NETWORK_FAULTS:
        name, up = PROXY_SERVICE, "`inv up --with chaos`"
    elif fault in GATEWAY_FAULTS:
        name, up = GATEWAY_SERVICE, "`inv up --with gateway`"
    try:
        container = stack.container(name)
    except StackError:
        if name == service:
            raise
        what = (
            "network faults go through the proxy"
            if name == PROXY_SERVICE
            else ("gateway faults act on the gateway")
        )
        raise StackError(f"{what}, which is not running: start it with {up}") from None
    if not container.state.running or container.state.paused:
        raise StackError(
            f"{name} is {container.state.status}, not running: start it with {up} "
            "before an experiment"
        )
    return container


def _watch(check: Callable[[], None], failing: bool, note: Callable[[str, str], None]) -> bool:
    """Probe once while the fault is on; note the first failure and each answer after one."""
    try:
        check()
    except (InfraError, OSError) as exc:
        if not failing:
            note("probe_failed", str(exc).splitlines()[0])
        return True
    if failing:
        note("probe_answered", "answered while the fault is on")
    return False
