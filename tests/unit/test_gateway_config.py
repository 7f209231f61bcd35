"""The gateway's generated config and certificates, without a server."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509

from infra_lib.errors import ConfigError
from infra_lib.gateway.layer import GatewayPaths, PublicUrls
from infra_lib.gateway.nginx import GatewayOptions, render_config
from infra_lib.gateway.routes import build_routes, stack_hosts
from infra_lib.gateway.tls import ensure_tls
from infra_lib.manifest import load_manifest
from infra_lib.stack.settings import StackSettings, load_stack_settings

ROOT = Path(__file__).resolve().parents[2]


def _settings(tmp_path: Path, **values: str) -> StackSettings:
    env = tmp_path / ".env"
    env.write_text("COMPOSE_PROJECT_NAME=gw-unit\n")
    return load_stack_settings(env, environ=values)


def _config(settings: StackSettings) -> str:
    routes = build_routes(load_manifest(ROOT / "infra.toml"))
    return render_config(routes, stack_hosts(), GatewayOptions.from_settings(settings))


def test_every_route_is_a_location_with_its_upstream(tmp_path: Path) -> None:
    text = _config(_settings(tmp_path))
    assert "location = /api/boards {" in text and "location /api/boards/ {" in text
    assert "server host.docker.internal:8000 max_fails=0;" in text
    # WebSocket routes upgrade; HTTP routes keep the upstream connection alive.
    ws = text.split("location = /ws/chat {", 1)[1].split("}", 1)[0]
    assert "proxy_set_header Connection $connection_upgrade;" in ws
    assert "server_name s3.localhost;" in text and "server_name livekit.localhost;" in text
    assert "server minio:9000 max_fails=0;" in text and "proxy_pass http://stack_s3;" in text


def test_redirect_keeps_a_moved_https_port(tmp_path: Path) -> None:
    assert "return 301 https://$host$request_uri;" in _config(_settings(tmp_path))
    moved = _config(_settings(tmp_path, GATEWAY_HTTPS_PORT="8443"))
    assert "return 301 https://$host:8443$request_uri;" in moved
    assert PublicUrls.from_settings(_settings(tmp_path, GATEWAY_HTTPS_PORT="8443")).s3 == (
        "https://s3.localhost:8443"
    )


def test_hsts_is_off_for_localhost_and_on_for_a_real_name(tmp_path: Path) -> None:
    assert "Strict-Transport-Security" not in _config(_settings(tmp_path))
    assert "Strict-Transport-Security" in _config(
        _settings(tmp_path, GATEWAY_HOST="dev.example.com")
    )
    assert "Strict-Transport-Security" not in _config(
        _settings(tmp_path, GATEWAY_HOST="dev.example.com", GATEWAY_HSTS="off")
    )


def test_limits_and_timeouts_come_from_the_settings(tmp_path: Path) -> None:
    text = _config(_settings(tmp_path, GATEWAY_MAX_BODY_SIZE="1m", GATEWAY_READ_TIMEOUT="7s"))
    assert "client_max_body_size 1m;" in text and "proxy_read_timeout 7s;" in text


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("GATEWAY_MAX_BODY_SIZE", "10 MB"),
        ("GATEWAY_READ_TIMEOUT", "60"),
        ("GATEWAY_READ_TIMEOUT", "1s; return 200"),
        ("GATEWAY_HOST", "Local Host"),
        ("GATEWAY_HOST", "a;b"),
        ("GATEWAY_HSTS", "yes"),
    ],
)
def test_bad_gateway_settings_are_refused(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key):
        _settings(tmp_path, **{key: value})


def _leaf(paths: GatewayPaths) -> x509.Certificate:
    return x509.load_pem_x509_certificates(paths.cert_file.read_bytes())[0]


def test_certificates_are_private_and_cover_the_names(tmp_path: Path) -> None:
    settings = _settings(tmp_path, INFRA_PUBLIC_HOST="192.0.2.7")
    paths = GatewayPaths(tmp_path / "env")
    result = ensure_tls(settings, paths)
    assert (result.ca, result.leaf) == ("created", "created")
    for folder in (paths.ca_dir, paths.tls_dir, paths.root):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for file in (paths.ca_cert, paths.ca_key, paths.cert_file, paths.key_file):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    san = _leaf(paths).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(san.get_values_for_type(x509.DNSName))
    assert {"localhost", "*.localhost", "s3.localhost", "livekit.localhost"} <= dns
    assert ipaddress.ip_address("192.0.2.7") in san.get_values_for_type(x509.IPAddress)
    assert ensure_tls(settings, paths).leaf == "unchanged"


def test_leaf_is_renewed_on_new_names_and_the_ca_is_kept(tmp_path: Path) -> None:
    paths = GatewayPaths(tmp_path / "env")
    ensure_tls(_settings(tmp_path), paths)
    ca = paths.ca_cert.read_bytes()
    result = ensure_tls(_settings(tmp_path, GATEWAY_HOST="dev.example.com"), paths)
    assert (result.ca, result.leaf, result.reason) == ("unchanged", "renewed", "names changed")
    assert paths.ca_cert.read_bytes() == ca
    dns = (
        _leaf(paths)
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value.get_values_for_type(x509.DNSName)
    )
    assert "s3.dev.example.com" in dns


def test_leaf_near_expiry_is_renewed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import infra_lib.gateway.tls as tls

    paths = GatewayPaths(tmp_path / "env")
    settings = _settings(tmp_path)
    ensure_tls(settings, paths)
    later = dt.datetime.now(dt.UTC) + tls.LEAF_LIFETIME - dt.timedelta(days=10)
    monkeypatch.setattr(tls, "_now", lambda: later)
    result = ensure_tls(settings, paths)
    assert (result.leaf, result.reason) == ("renewed", "expires soon")


def test_half_a_ca_is_refused_rather_than_replaced(tmp_path: Path) -> None:
    paths = GatewayPaths(tmp_path / "env")
    ensure_tls(_settings(tmp_path), paths)
    paths.ca_key.unlink()
    with pytest.raises(ConfigError, match="half of the local CA"):
        ensure_tls(_settings(tmp_path), paths)


def test_a_public_host_that_is_no_plain_name_stays_out_of_config_and_certificate(
    tmp_path: Path,
) -> None:
    from infra_lib.gateway.tls import certificate_names

    settings = _settings(tmp_path, INFRA_PUBLIC_HOST="dev.example.com;return")
    assert "dev.example.com;return" not in _config(settings)
    assert "dev.example.com;return" not in certificate_names(settings)
    named = _settings(tmp_path, INFRA_PUBLIC_HOST="box.lan")
    assert "box.lan" in certificate_names(named) and " box.lan" in _config(named)


def test_trust_install_copies_the_ca_and_runs_the_store_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from infra_lib.gateway import trust

    paths = GatewayPaths(tmp_path / "env")
    ensure_tls(_settings(tmp_path), paths)
    # The process boundary: a stand-in update-ca-certificates that records its run.
    marker = tmp_path / "ran"
    tool = tmp_path / "update-ca-certificates"
    tool.write_text(f"#!/bin/sh\ntouch {marker}\n")
    tool.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name: str(tool))
    monkeypatch.setattr(trust.os, "geteuid", lambda: 0)
    (tmp_path / "store").mkdir()
    target = trust.install_ca(paths, "gw-unit", target_dir=tmp_path / "store" / "certs")
    assert target.read_bytes() == paths.ca_cert.read_bytes()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert marker.exists()


def test_trust_instructions_name_the_ca(tmp_path: Path) -> None:
    from infra_lib.gateway.trust import trust_instructions

    paths = GatewayPaths(tmp_path / "env")
    text = "\n".join(trust_instructions(paths, "gw-unit"))
    assert str(paths.ca_cert) in text
    assert "update-ca-certificates" in text and "security add-trusted-cert" in text


def test_trust_install_without_root_says_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra_lib.gateway import trust

    paths = GatewayPaths(tmp_path / "env")
    ensure_tls(_settings(tmp_path), paths)
    monkeypatch.setattr(trust.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(trust.shutil, "which", lambda name: "/usr/sbin/update-ca-certificates")
    with pytest.raises(ConfigError, match="needs root"):
        trust.install_ca(paths, "gw-unit", target_dir=tmp_path / "certs")
