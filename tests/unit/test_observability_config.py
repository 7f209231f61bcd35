"""The observability layer's config: manifest metrics, scrape jobs, credentials, profiles."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import stat
from pathlib import Path

import pytest

from infra_lib.errors import ConfigError, ManifestError
from infra_lib.manifest import load_manifest, parse_manifest
from infra_lib.observability.credentials import (
    REDIS_EXPORTER_ADDR,
    ensure_credentials,
    minio_metrics_token,
)
from infra_lib.observability.layer import LayerPaths, is_enabled, require_enabled
from infra_lib.observability.scrape import (
    HOST_GATEWAY,
    STACK_JOBS,
    build_scrape_jobs,
    render_scrape_config,
    write_scrape_config,
)
from infra_lib.stack.compose import Stack, StackPaths
from infra_lib.stack.envfile import parse_env_lines, set_env_value
from infra_lib.stack.services import PROFILE_SERVICES, SERVICE_NAMES, services_for
from infra_lib.stack.settings import load_stack_settings

ROOT = Path(__file__).resolve().parents[2]


def _settings(tmp_path: Path, text: str = ""):  # type: ignore[no-untyped-def]
    env = tmp_path / ".env"
    env.write_text(text)
    return load_stack_settings(env, environ={})


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


# -- manifest ---------------------------------------------------------------


def test_reference_services_declare_their_metrics_endpoints() -> None:
    manifest = load_manifest(ROOT / "infra.toml")
    declared = {s.name: (s.metrics.port, s.metrics.path) for s in manifest if s.metrics}
    assert declared == {
        "board-service": (8000, "/metrics"),
        "auth-service": (8090, "/actuator/prometheus"),
        "noti-service": (8002, "/metrics"),
    }


@pytest.mark.parametrize(
    ("metrics", "field"),
    [
        ({"port": 0}, "metrics.port"),
        ({"port": 70000}, "metrics.port"),
        ({"port": "eight"}, "metrics.port"),
        ({"path": "/metrics"}, "metrics.port"),
        ({"port": 8000, "path": "metrics"}, "metrics.path"),
        ({"port": 8000, "path": "/metrics?x=1"}, "metrics.path"),
        ({"port": 8000, "upstream": "Not A Service"}, "metrics.upstream"),
        ({"port": 8000, "scheme": "ftp"}, "metrics.scheme"),
        ({"port": 8000, "interval": "soon"}, "metrics.interval"),
        ({"port": 8000, "portt": 1}, "metrics.portt"),
    ],
)
def test_bad_metrics_config_is_rejected_naming_the_field(
    metrics: dict[str, object], field: str
) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest({"services": {"board-service": {"metrics": metrics}}}, path="infra.toml")
    assert f"infra.toml: service 'board-service', field '{field}'" in str(info.value)


def test_job_name_taken_by_the_stack_is_rejected_naming_the_service() -> None:
    manifest = parse_manifest({"services": {"redis": {"metrics": {"port": 9000}}}}, path="m.toml")
    with pytest.raises(ManifestError, match=r"service 'redis', field 'metrics'.*rename"):
        build_scrape_jobs(manifest)


def test_two_services_on_one_target_are_rejected() -> None:
    manifest = parse_manifest(
        {"services": {"a": {"metrics": {"port": 8000}}, "b": {"metrics": {"port": 8000}}}},
        path="m.toml",
    )
    with pytest.raises(ManifestError, match=r"service 'b', field 'metrics.port'"):
        build_scrape_jobs(manifest)


# -- scrape config ------------------------------------------------------------


def test_scrape_config_has_the_stack_jobs_then_the_services(tmp_path: Path) -> None:
    manifest = parse_manifest(
        {
            "services": {
                "board-service": {"metrics": {"port": 8000}},
                "auth-service": {
                    "metrics": {
                        "port": 8090,
                        "path": "/actuator/prometheus",
                        "upstream": "auth",
                        "interval": "30s",
                    }
                },
                "plain": {},
            }
        }
    )
    settings = _settings(tmp_path, "METRICS_SCRAPE_INTERVAL=15s\nCOMPOSE_PROJECT_NAME=demo\n")
    text = render_scrape_config(settings, build_scrape_jobs(manifest))
    # A YAML file whose body is JSON, after the comment lines.
    config = json.loads("\n".join(ln for ln in text.splitlines() if not ln.startswith("#")))
    assert config["global"] == {"scrape_interval": "15s", "external_labels": {"project": "demo"}}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert list(jobs) == [*(j.name for j in STACK_JOBS), "board-service", "auth-service"]
    board = jobs["board-service"]
    assert board["metrics_path"] == "/metrics"
    assert board["static_configs"] == [
        {
            "targets": [f"{HOST_GATEWAY}:8000"],
            "labels": {"layer": "service", "service": "board-service"},
        }
    ]
    auth = jobs["auth-service"]
    assert auth["static_configs"][0]["targets"] == ["auth:8090"]
    assert auth["metrics_path"] == "/actuator/prometheus"
    assert auth["scrape_interval"] == "30s"
    assert jobs["minio"]["bearer_token_file"] == "/run/secrets/minio-metrics-token"
    assert jobs["minio"]["metrics_path"] == "/minio/v2/metrics/cluster"
    for name in ("postgres", "redis", "minio", "livekit"):
        assert jobs[name]["static_configs"][0]["labels"] == {"layer": "stack"}


def test_scrape_config_is_written_once_and_privately(tmp_path: Path) -> None:
    paths = LayerPaths(tmp_path / "env" / "demo")
    assert write_scrape_config(paths, "a: 1\n") is True
    assert write_scrape_config(paths, "a: 1\n") is False
    assert stat.S_IMODE(paths.scrape_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.root.stat().st_mode) == 0o700


# -- credentials ----------------------------------------------------------------


def test_minio_token_is_the_jwt_mc_admin_prometheus_generate_makes() -> None:
    token = minio_metrics_token("root-user", "root-secret", now=1_000)
    header, body, signature = token.split(".")
    assert json.loads(_b64decode(header)) == {"alg": "HS512", "typ": "JWT"}
    claims = json.loads(_b64decode(body))
    assert claims["sub"] == "root-user"
    assert claims["iss"] == "prometheus"
    assert claims["exp"] > 1_000 + 99 * 365 * 24 * 3600
    expected = hmac.new(b"root-secret", f"{header}.{body}".encode(), hashlib.sha512).digest()
    assert _b64decode(signature) == expected


def test_credentials_are_generated_once_private_and_follow_the_minio_secret(
    tmp_path: Path,
) -> None:
    paths = LayerPaths(tmp_path / "env" / "demo")
    first = ensure_credentials(paths, minio_access_key="root", minio_secret_key="s1")
    assert stat.S_IMODE(paths.secrets_env.stat().st_mode) == 0o600
    again = ensure_credentials(paths, minio_access_key="root", minio_secret_key="s1")
    assert again == first
    values = parse_env_lines(paths.secrets_env.read_text())
    assert values["INFRA_MONITOR_POSTGRES_PASSWORD"] == first.postgres_password
    # redis_exporter's password file: a JSON map, single-quoted for Compose.
    assert json.loads(values["INFRA_MONITOR_REDIS_PASSWORD_FILE"].strip("'")) == {
        REDIS_EXPORTER_ADDR: first.redis_password
    }
    rotated = ensure_credentials(paths, minio_access_key="root", minio_secret_key="s2")
    assert rotated.postgres_password == first.postgres_password
    assert rotated.minio_token != first.minio_token
    assert first.postgres_password not in repr(first)


# -- profiles ---------------------------------------------------------------------


def test_profiles_come_from_infra_profiles(tmp_path: Path) -> None:
    off = _settings(tmp_path)
    assert off.profiles == () and not is_enabled(off)
    with pytest.raises(ConfigError, match="inv up --with observability"):
        require_enabled(off)
    on = _settings(tmp_path, "INFRA_PROFILES= observability,observability\n")
    assert on.profiles == ("observability",) and is_enabled(on)


def test_unknown_profile_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"INFRA_PROFILES.*unknown profile 'kibana'"):
        _settings(tmp_path, "INFRA_PROFILES=kibana\n")


def test_grafana_needs_the_observability_layer(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"INFRA_PROFILES.*--with observability --with grafana"):
        _settings(tmp_path, "INFRA_PROFILES=grafana\n")
    both = _settings(tmp_path, "INFRA_PROFILES=observability,grafana\n")
    assert both.profiles == ("observability", "grafana")


def test_bad_retention_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="METRICS_RETENTION"):
        _settings(tmp_path, "METRICS_RETENTION=a week\n")


def test_stack_lists_a_layer_only_while_it_is_on(tmp_path: Path) -> None:
    layer = [s.name for s in PROFILE_SERVICES["observability"]]
    off = Stack(_settings(tmp_path), StackPaths.for_root(ROOT, tmp_path / ".env"))
    assert [s.name for s in off.resolve(None)] == list(SERVICE_NAMES)
    with pytest.raises(ConfigError, match="inv up --with observability"):
        off.resolve(["victoriametrics"])
    on_settings = _settings(tmp_path, "INFRA_PROFILES=observability\n")
    on = Stack(on_settings, StackPaths.for_root(ROOT, tmp_path / ".env"))
    assert [s.name for s in on.resolve(None)] == [*SERVICE_NAMES, *layer]
    assert [s.name for s in services_for(("observability",))] == [*SERVICE_NAMES, *layer]


def test_every_service_of_the_layer_is_in_its_profile() -> None:
    text = (ROOT / "compose" / "observability.yaml").read_text()
    body = text.split("\nservices:\n", 1)[1].split("\nsecrets:\n", 1)[0]
    blocks = re.split(r"^  (?=[a-z][a-z0-9-]*:\n)", body, flags=re.M)
    names = []
    for block in filter(None, blocks):
        name = block.split(":", 1)[0]
        names.append(name)
        assert "    profiles: [observability]\n" in block, name
    assert names == [s.name for s in PROFILE_SERVICES["observability"]]
    # Published ports bind to INFRA_BIND_ADDRESS, like the rest of the stack.
    assert re.findall(r'"\$\{INFRA_BIND_ADDRESS:-127\.0\.0\.1\}:\$\{(\w+):-\d+\}', text) == [
        "METRICS_PORT",
        "LOGS_PORT",
        "TRACES_UI_PORT",
        "OTLP_GRPC_PORT",
        "OTLP_HTTP_PORT",
    ]


def test_env_example_documents_the_layer() -> None:
    values = parse_env_lines((ROOT / ".env.example").read_text())
    assert values["INFRA_PROFILES"] == ""
    assert values["METRICS_RETENTION"] == "7d"
    assert values["METRICS_PORT"] == "8428"
    for key in (
        "VICTORIAMETRICS_IMAGE",
        "VMALERT_IMAGE",
        "POSTGRES_EXPORTER_IMAGE",
        "REDIS_EXPORTER_IMAGE",
        "NODE_EXPORTER_IMAGE",
        "VICTORIALOGS_IMAGE",
        "OTELCOL_IMAGE",
        "JAEGER_IMAGE",
    ):
        assert re.fullmatch(r"[\w./-]+:v?\d[\w.-]*", values[key]), key


def test_set_env_value_replaces_one_line_and_keeps_the_rest(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("# comment\nA=1\nINFRA_PROFILES=\nB=2\nINFRA_PROFILES=old\n")
    env.chmod(0o600)
    assert set_env_value(env, "INFRA_PROFILES", "observability") is True
    assert env.read_text() == "# comment\nA=1\nINFRA_PROFILES=observability\nB=2\n"
    assert set_env_value(env, "INFRA_PROFILES", "observability") is False
    assert set_env_value(env, "NEW", "x") is True
    assert env.read_text().endswith("B=2\nNEW=x\n")
    assert stat.S_IMODE(env.stat().st_mode) == 0o600


def test_a_dry_run_writes_no_credentials(tmp_path: Path) -> None:
    paths = LayerPaths(tmp_path / "env" / "demo")
    planned = ensure_credentials(paths, minio_access_key="root", minio_secret_key="s", save=False)
    assert planned.postgres_password
    assert not paths.secrets_env.exists()


def test_stack_passes_a_secrets_file_written_after_its_client_was_made(tmp_path: Path) -> None:
    # The first `inv up --with observability` makes the Docker client (the
    # foreign-project check) before the layer's secrets file exists.
    (tmp_path / ".env").write_text("INFRA_PROFILES=observability\n")
    secrets = tmp_path / "secrets.env"
    stack = Stack(
        load_stack_settings(tmp_path / ".env", environ={}),
        StackPaths.for_root(ROOT, tmp_path / ".env"),
        extra_env_files=[secrets],
    )
    before = [Path(p) for p in stack.docker.client_config.compose_env_files]
    assert before == [tmp_path / ".env"]
    secrets.write_text("INFRA_MONITOR_MINIO_TOKEN=x\n")
    after = [Path(p) for p in stack.docker.client_config.compose_env_files]
    assert after == [tmp_path / ".env", secrets]
    assert stack.docker.client_config.compose_profiles == ["observability"]
