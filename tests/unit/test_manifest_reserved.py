"""The manifest refuses the server's own objects as a service's database or role."""

from __future__ import annotations

import pytest

from infra_lib.errors import ManifestError
from infra_lib.manifest import parse_manifest


def _error(postgres: dict[str, str]) -> str:
    with pytest.raises(ManifestError) as info:
        parse_manifest({"services": {"x": {"postgres": postgres}}}, path="infra.toml")
    return str(info.value)


@pytest.mark.parametrize("database", ["postgres", "template0", "template1"])
def test_system_databases_are_refused(database: str) -> None:
    message = _error({"database": database, "role": "x_user"})
    assert "service 'x', field 'postgres.database'" in message
    assert "belongs to the server" in message


@pytest.mark.parametrize("role", ["postgres", "public", "pg_monitor", "pg_read_all_data", "none"])
def test_system_roles_are_refused(role: str) -> None:
    assert "service 'x', field 'postgres.role'" in _error({"database": "x_db", "role": role})


def test_template_may_still_name_a_system_template() -> None:
    manifest = parse_manifest(
        {
            "services": {
                "x": {"postgres": {"database": "x_db", "role": "x_user", "template": "template1"}}
            }
        }
    )
    service = manifest.service("x")
    assert service.postgres is not None and service.postgres.template == "template1"
