"""The service catalogue agrees with the compose files; ports are checked."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from infra_lib.errors import ConfigError, PortInUse
from infra_lib.stack.ports import check_ports_free, free_port_plan, port_is_free
from infra_lib.stack.services import SERVICE_NAMES, SERVICES, service_spec
from infra_lib.stack.settings import load_stack_settings

ROOT = Path(__file__).resolve().parents[2]


def _published_variables(compose_file: Path) -> set[str]:
    text = compose_file.read_text()
    block = text.split("    ports:\n", 1)[1].split("\n    volumes:", 1)[0]
    return set(re.findall(r"\$\{([A-Z_]+_PORT[A-Z_]*)", block))


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
def test_catalogue_matches_compose_ports(spec: object) -> None:
    from infra_lib.stack.services import ServiceSpec

    assert isinstance(spec, ServiceSpec)
    declared: set[str] = set()
    for port in spec.ports:
        declared.add(port.variable)
        if port.end_variable:
            declared.add(port.end_variable)
    assert _published_variables(ROOT / "compose" / f"{spec.name}.yaml") == declared


def test_top_level_compose_includes_every_service() -> None:
    text = (ROOT / "compose" / "compose.yaml").read_text()
    # The core services, then each optional layer (a Compose profile).
    assert re.findall(r"^  - (\w+)\.yaml$", text, re.M) == [
        *SERVICE_NAMES,
        "observability",
        "gateway",
        "chaos",
        "grafana",
    ]


def test_unknown_service_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="known services"):
        service_spec("mysql")


def test_taken_port_is_named_with_its_variable(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert not port_is_free("127.0.0.1", port, "tcp")
        env = tmp_path / ".env"
        env.write_text(f"POSTGRES_PORT={port}\n")
        settings = load_stack_settings(env)
        with pytest.raises(PortInUse) as info:
            check_ports_free(settings, [service_spec("postgres")])
    assert info.value.variable == "POSTGRES_PORT"
    assert str(port) in str(info.value)
    assert "POSTGRES_PORT" in str(info.value)


def test_taken_udp_port_in_a_range_names_the_range(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        env = tmp_path / ".env"
        env.write_text(f"LIVEKIT_RTC_PORT_START={port - 1}\nLIVEKIT_RTC_PORT_END={port + 1}\n")
        settings = load_stack_settings(env)
        spec = service_spec("livekit")
        udp_only = type(spec)(spec.name, spec.ports[2:], spec.endpoint_template)
        with pytest.raises(PortInUse, match="LIVEKIT_RTC_PORT_START/LIVEKIT_RTC_PORT_END"):
            check_ports_free(settings, [udp_only])


def test_free_port_is_free() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert port_is_free("127.0.0.1", port, "tcp")


def _free_except(*taken: int) -> Callable[[str, int, str], bool]:
    """Port checks of a machine where only ``taken`` is bound (whatever runs here now)."""
    return lambda _host, port, _protocol: port not in taken


def test_auto_ports_moves_only_taken_ports_to_free_ones(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("")
    settings = load_stack_settings(env)
    plan = free_port_plan(settings, SERVICES, is_free=_free_except(settings.postgres_port))
    assert set(plan) == {"POSTGRES_PORT"}
    assert 20000 <= plan["POSTGRES_PORT"] < 32768


def test_auto_ports_moves_a_range_whole_and_never_gives_a_port_twice(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("LIVEKIT_RTC_PORT_START=50000\nLIVEKIT_RTC_PORT_END=50009\n")
    settings = load_stack_settings(env)
    # A stopped container of another checkout publishes one port of the range
    # and the PostgreSQL default.
    plan = free_port_plan(
        settings, SERVICES, also_taken={50004, settings.postgres_port}, is_free=_free_except()
    )
    start, end = plan["LIVEKIT_RTC_PORT_START"], plan["LIVEKIT_RTC_PORT_END"]
    assert end - start == 9
    assert plan["POSTGRES_PORT"] not in range(start, end + 1)
    assert set(plan) == {"LIVEKIT_RTC_PORT_START", "LIVEKIT_RTC_PORT_END", "POSTGRES_PORT"}


def test_ports_this_project_holds_are_not_moved(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("")
    settings = load_stack_settings(env)
    every = {p for spec in SERVICES for pub in spec.ports for p in pub.host_ports(settings)}
    # As if the project's own running containers held all of them.
    plan = free_port_plan(settings, SERVICES, owned=every, is_free=lambda *_: False)
    assert plan == {}


def test_the_port_conflict_error_suggests_auto_ports(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        env = tmp_path / ".env"
        env.write_text(f"REDIS_PORT={holder.getsockname()[1]}\n")
        with pytest.raises(PortInUse, match="inv init --auto-ports"):
            check_ports_free(load_stack_settings(env), [service_spec("redis")])
