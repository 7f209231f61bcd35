"""Find published ports that are already taken, before Compose tries them.

Docker's own error for a taken port names neither the service nor the setting
to change; checking first lets the error say both.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

from infra_lib.errors import PortInUse
from infra_lib.stack.services import ServiceSpec
from infra_lib.stack.settings import StackSettings

__all__ = ["check_ports_free", "port_is_free"]


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
                        f"(e.g. `ss -lntup | grep :{port}`), or move {spec.name} by setting "
                        f"{published.describe()} in .env.",
                        service=spec.name,
                        port=port,
                        variable=published.describe(),
                    )
