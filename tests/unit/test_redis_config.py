"""RedisConfig: URLs, redacted repr, validation; no server needed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.connection import SSLConnection
from redis.connection import parse_url as _parse_url

from infra_lib.errors import ConfigError
from infra_lib.redis.config import RedisConfig
from infra_lib.stack.settings import load_stack_settings

# redis-py's own URL parser (untyped): what a Python service would do with the URL.
parse_url = cast("Callable[[str], dict[str, Any]]", _parse_url)


def test_url_with_the_admin_password_only() -> None:
    config = RedisConfig(host="127.0.0.1", password="pw")
    assert config.url(3) == "redis://:pw@127.0.0.1:6379/3"


def test_url_without_credentials() -> None:
    assert RedisConfig(host="redis.internal", port=6380).url(0) == "redis://redis.internal:6380/0"


def test_url_with_a_service_user_overrides_both() -> None:
    config = RedisConfig(host="h", port=7000, password="admin")
    url = config.url(4, username="video-service", password="s3cret")
    assert url == "redis://video-service:s3cret@h:7000/4"


def test_url_overrides_default_one_at_a_time() -> None:
    config = RedisConfig(host="h", username="ops", password="admin")
    assert config.url(1, password="other") == "redis://ops:other@h:6379/1"
    assert config.url(1, username="svc") == "redis://svc:admin@h:6379/1"


def test_url_with_user_and_no_password() -> None:
    assert RedisConfig(host="h", username="svc").url(2) == "redis://svc@h:6379/2"


def test_url_percent_encodes_credentials() -> None:
    config = RedisConfig(host="h", username="us er@x", password="p@ss:/w?rd#%")
    url = config.url(5)
    assert url == "redis://us%20er%40x:p%40ss%3A%2Fw%3Frd%23%25@h:6379/5"
    parsed = parse_url(url)
    assert parsed["username"] == "us er@x"
    assert parsed["password"] == "p@ss:/w?rd#%"
    assert parsed["db"] == 5


@given(
    password=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40),
    username=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20),
    db=st.integers(min_value=0, max_value=1_000),
)
def test_any_credentials_survive_redis_py_url_parsing(
    password: str, username: str, db: int
) -> None:
    url = RedisConfig(host="127.0.0.1").url(db, username=username, password=password)
    parsed = parse_url(url)
    assert (parsed["username"], parsed["password"], parsed["db"]) == (username, password, db)
    assert (parsed["host"], parsed["port"]) == ("127.0.0.1", 6379)


def test_tls_uses_rediss() -> None:
    config = RedisConfig(host="cache.example.com", port=6380, password="pw", tls=True)
    assert config.url(0) == "rediss://:pw@cache.example.com:6380/0"


def test_ipv6_host_is_bracketed() -> None:
    assert RedisConfig(host="::1").url(1) == "redis://[::1]:6379/1"


@pytest.mark.parametrize("db", [-1, True, "3"])
def test_url_rejects_bad_db_numbers(db: object) -> None:
    with pytest.raises(ConfigError, match="DB number"):
        RedisConfig(host="h").url(db)  # type: ignore[arg-type]


def test_repr_hides_the_password() -> None:
    config = RedisConfig(host="h", username="ops", password="hunter2-very-secret")
    assert "hunter2-very-secret" not in repr(config)
    assert "hunter2-very-secret" not in str(config)
    assert "ops" in repr(config)


def test_config_is_frozen() -> None:
    config = RedisConfig(host="h")
    with pytest.raises(AttributeError):
        config.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"host": ""}, "host"),
        ({"host": "h", "port": 0}, "port"),
        ({"host": "h", "port": 70000}, "port"),
        ({"host": "h", "socket_timeout": 0}, "socket_timeout"),
        ({"host": "h", "tls_ca_file": "/ca.pem"}, "tls"),
    ],
)
def test_invalid_settings_are_config_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RedisConfig(**kwargs)  # type: ignore[arg-type]


def test_from_stack_reads_host_port_and_password(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("INFRA_PUBLIC_HOST=10.0.0.5\nREDIS_PORT=6390\nREDIS_PASSWORD=from-env-file\n")
    config = RedisConfig.from_stack(load_stack_settings(env, environ={}))
    assert (config.host, config.port, config.password) == ("10.0.0.5", 6390, "from-env-file")
    assert not config.tls


def test_from_stack_without_password_says_what_to_do(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("")
    with pytest.raises(ConfigError, match=r"REDIS_PASSWORD.*inv init"):
        RedisConfig.from_stack(load_stack_settings(env, environ={}))


def test_client_is_built_without_connecting() -> None:
    client = RedisConfig(host="127.0.0.1", port=1, password="pw", socket_timeout=2.5).client(7)
    try:
        kwargs = client.get_connection_kwargs()
        assert (kwargs["db"], kwargs["password"], kwargs["socket_timeout"]) == (7, "pw", 2.5)
        assert client.connection_pool.connection_class is not SSLConnection
    finally:
        client.close()


def test_tls_client_verifies_the_server() -> None:
    config = RedisConfig(host="h", tls=True, tls_ca_file="/etc/ssl/ca.pem")
    client = config.client(0)
    try:
        assert client.connection_pool.connection_class is SSLConnection
        kwargs = client.get_connection_kwargs()
        assert kwargs["ssl_ca_certs"] == "/etc/ssl/ca.pem"
        assert kwargs["ssl_cert_reqs"] == "required"
    finally:
        client.close()


def test_importing_config_does_not_import_redis_py() -> None:
    code = (
        "import sys, infra_lib.redis, infra_lib.redis.config\n"
        "from infra_lib.redis import RedisConfig\n"
        "RedisConfig(host='h').url(0)\n"
        "assert 'redis' not in sys.modules, 'redis-py imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
