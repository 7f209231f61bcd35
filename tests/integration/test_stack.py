"""The running stack: every service healthy and answering its own protocol."""

from __future__ import annotations

import pytest

from infra_lib.stack.compose import Stack
from infra_lib.stack.probes import probe
from infra_lib.stack.services import SERVICE_NAMES, services_for
from infra_lib.stack.settings import StackSettings

from .conftest import run_inv

pytestmark = pytest.mark.integration


def test_every_service_runs_healthy(stack: Stack) -> None:
    statuses = {s.name: s for s in stack.status()}
    # The core services, plus a switched-on layer's (INFRA_PROFILES).
    assert set(statuses) == {s.name for s in services_for(stack.settings.profiles)}
    assert set(SERVICE_NAMES) <= set(statuses)
    for status in statuses.values():
        assert status.state == "running", status
        # The exporters and the collector have no healthcheck: the official
        # redis_exporter and opentelemetry-collector-contrib images have neither
        # shell nor wget; the metrics store's `up` is their health.
        unchecked = status.name.endswith("-exporter") or status.name == "otelcol"
        expected = "none" if unchecked else "healthy"
        assert status.health == expected, status


def test_postgres_answers_select_1(settings: StackSettings) -> None:
    assert probe(settings, "postgres").detail.startswith("SELECT 1 ok, PostgreSQL 17")


def test_redis_answers_ping_with_configured_limits(settings: StackSettings) -> None:
    import redis

    assert probe(settings, "redis").detail.startswith("PING ok, Redis 7")
    client = redis.Redis(
        port=settings.redis_port, password=settings.secret("redis_password"), decode_responses=True
    )
    with client:
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
        assert int(client.config_get("databases")["databases"]) == settings.redis_databases
        assert client.config_get("appendonly")["appendonly"] == "yes"


def test_redis_refuses_clients_without_the_password(settings: StackSettings) -> None:
    import redis

    with (
        redis.Redis(port=settings.redis_port) as anonymous,
        pytest.raises(redis.AuthenticationError),
    ):
        anonymous.ping()


def test_postgres_refuses_a_wrong_password(settings: StackSettings) -> None:
    import psycopg

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host="127.0.0.1",
            port=settings.postgres_port,
            user=settings.postgres_user,
            password="wrong",
            dbname="postgres",
            connect_timeout=5,
        )


def test_minio_lists_buckets_with_root_credentials(settings: StackSettings) -> None:
    assert probe(settings, "minio").detail.startswith("ListBuckets ok")


def test_livekit_answers_http(settings: StackSettings) -> None:
    assert probe(settings, "livekit").detail == "HTTP 200 OK"


def test_coturn_answers_a_stun_binding(settings: StackSettings) -> None:
    assert probe(settings, "coturn").detail.startswith("STUN binding ok, mapped")


def test_inv_status_exits_zero_on_a_healthy_stack() -> None:
    result = run_inv("status", "--probe")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in SERVICE_NAMES:
        assert name in result.stdout


def test_inv_up_on_a_healthy_stack_is_a_no_op() -> None:
    result = run_inv("up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "healthy" in result.stdout


def test_published_ports_bind_to_loopback_only(stack: Stack) -> None:
    for container in stack.docker.compose.ps():
        for bindings in (container.network_settings.ports or {}).values():
            for binding in bindings or []:
                assert binding.get("HostIp") == stack.settings.infra_bind_address


@pytest.mark.parametrize(
    ("service", "field", "why"),
    [
        ("postgres", "postgres_password", "data volume was most likely made"),
        ("redis", "redis_password", "data volume was most likely made"),
        ("minio", "minio_root_password", "started with another MINIO_ROOT_USER or MINIO_ROOT_PAS"),
    ],
)
def test_a_password_the_server_does_not_know_fails_at_once_and_says_why(
    settings: StackSettings, service: str, field: str, why: str
) -> None:
    import time

    from pydantic import SecretStr

    from infra_lib.errors import CredentialsRejected
    from infra_lib.stack.probes import wait_for

    wrong = settings.model_copy(update={field: SecretStr("not-the-volumes-password")})
    started = time.monotonic()
    with pytest.raises(CredentialsRejected, match=why) as caught:
        wait_for(wrong, [service], timeout=60)
    # No retrying until the timeout: a wrong password stays wrong.
    assert time.monotonic() - started < 10
    assert field.upper() in str(caught.value)
    assert "not-the-volumes-password" not in str(caught.value)
