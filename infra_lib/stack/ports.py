"""Find published ports that are already taken, before Compose tries them.

Docker's own error for a taken port names neither the service nor the setting
to change; checking first lets the error say both.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Collection, Iterable

from infra_lib.errors import PortInUse
from infra_lib.stack.services import ServiceSpec
from infra_lib.stack.settings import StackSettings

__all__ = ["check_ports_free", "free_port_plan", "port_is_free"]

#: Where ``free_port_plan`` looks for new ports: above the defaults and the
#: usual development ports, below Linux's ephemeral range (32768+), so a
#: chosen port is not handed out to some client connection meanwhile.
_SEARCH = range(20000, 32768)


def port_is_free(host: str, port: int, protocol: str) -> bool:
    """Whether ``host:port`` can be bound for ``protocol`` right now."""
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        if kind == socket.SOCK_STREAM:
            # Ignore sockets lingering in TIME_WAIT; a live listener still fails.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def check_ports_free(settings: StackSettings, services: Iterable[ServiceSpec]) -> None:
    """Raise :class:`PortInUse` for the first published port that is taken.

    Only call this for services that are not already running in this
    project: a running service holds its own ports.
    """
    host = settings.infra_bind_address
    for spec in services:
        for published in spec.ports:
            for port in published.host_ports(settings):
                if not port_is_free(host, port, published.protocol):
                    raise PortInUse(
                        f"port {port}/{published.protocol} on {host} is already in use, "
                        f"so {spec.name} cannot publish it. Stop whatever holds it "
                        f"(e.g. `ss -lntup | grep :{port}`), move {spec.name} by setting "
                        f"{published.describe()} in .env, or run `inv init --auto-ports` to "
                        "move every taken port of the stack to a free one.",
                        service=spec.name,
                        port=port,
                        variable=published.describe(),
                    )


def free_port_plan(
    settings: StackSettings,
    services: Iterable[ServiceSpec],
    *,
    also_taken: Collection[int] = (),
    owned: Collection[int] = (),
    is_free: Callable[[str, int, str], bool] = port_is_free,
) -> dict[str, int]:
    """New values for the port variables whose ports are taken, by variable.

    A port is taken when it cannot be bound now or is in ``also_taken``
    (e.g. published by a stopped container of another checkout, which will
    want it back); ports in ``owned`` (held by this project's own containers)
    count as free. A range (LiveKit's media ports, coturn's relay ports)
    moves as a whole to a free block of the same size. Ports that are free
    are kept; new ones are picked from 20000-32767 and never given twice.
    """
    host = settings.infra_bind_address
    # One entry per variable; coturn publishes TURN_PORT over TCP and UDP.
    ranges: dict[str, tuple[str | None, range, set[str]]] = {}
    for spec in services:
        for published in spec.ports:
            entry = ranges.setdefault(
                published.variable,
                (published.end_variable, published.host_ports(settings), set()),
            )
            entry[2].add(published.protocol)
    blocked = set(also_taken)
    mine = set(owned)

    def usable(port: int, protocols: set[str]) -> bool:
        if port in blocked:
            return False
        return port in mine or all(is_free(host, port, p) for p in sorted(protocols))

    plan: dict[str, int] = {}
    moving: list[tuple[str, str | None, range, set[str]]] = []
    for variable, (end_variable, ports, protocol) in ranges.items():
        if all(usable(port, protocol) for port in ports):
            blocked.update(ports)
        else:
            moving.append((variable, end_variable, ports, protocol))
    candidate = _SEARCH.start
    for variable, end_variable, ports, protocol in moving:
        size = len(ports)
        while True:
            if candidate + size > _SEARCH.stop:
                raise PortInUse(
                    f"no {size} free port(s) in a row between {_SEARCH.start} and "
                    f"{_SEARCH.stop - 1} on {host} for {variable} "
                    f"({'/'.join(sorted(protocol))}); free some or set it by hand",
                    service="",
                    port=ports.start,
                    variable=variable,
                )
            block = range(candidate, candidate + size)
            candidate += size
            if all(usable(p, protocol) for p in block):
                break
        blocked.update(block)
        plan[variable] = block.start
        if end_variable is not None:
            plan[end_variable] = block.stop - 1
    return plan
