"""The PostgreSQL error translator: what it raises, and that secrets never show."""

from __future__ import annotations

import psycopg
import pytest

from infra_lib.errors import ProvisionError, ServiceUnavailable
from infra_lib.postgres.catalog import translate_errors
from infra_lib.postgres.config import PostgresConfig

CONFIG = PostgresConfig(host="db.example", port=5432, user="admin", password="admin-pw-123")


def test_a_failed_connection_is_unavailable_and_names_the_server() -> None:
    with (
        pytest.raises(ServiceUnavailable, match=r"db\.example:5432 as admin to check") as info,
        translate_errors(CONFIG, "check"),
    ):
        raise psycopg.OperationalError("password admin-pw-123 was refused")
    assert "admin-pw-123" not in str(info.value)
    assert info.value.service == "postgres"


def test_a_refused_statement_is_a_provision_error_with_every_secret_blanked() -> None:
    with (
        pytest.raises(ProvisionError, match=r"postgres: could not create the role: ") as info,
        translate_errors(CONFIG, "create the role", secrets=["role-pw-456", None]),
    ):
        raise psycopg.errors.InsufficientPrivilege("near 'role-pw-456' and admin-pw-123")
    assert "role-pw-456" not in str(info.value)
    assert "admin-pw-123" not in str(info.value)
    assert "********" in str(info.value)


def test_other_errors_pass_through() -> None:
    with pytest.raises(ValueError, match="not a driver error"), translate_errors(CONFIG, "x"):
        raise ValueError("not a driver error")
