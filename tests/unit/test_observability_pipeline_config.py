"""The layer's pipeline config: OTEL keys in env files, settings, the collector's config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra_lib.errors import ConfigError
from infra_lib.manifest import parse_manifest
from infra_lib.observability.logstore import stream_filter
from infra_lib.observability.otlp import OtlpEndpoints
from infra_lib.provisioning import provision, read_service_env
from infra_lib.stack.settings import load_stack_settings

ROOT = Path(__file__).resolve().parents[2]
COLLECTOR_CONFIG = ROOT / "compose" / "observability" / "otelcol" / "config.yaml"
BUILDER_MANIFEST = ROOT / "scripts" / "standins" / "otelcol" / "manifest.yaml"

MANIFEST = parse_manifest(
    {
        "services": {
            "web": {},
            "noti": {"metrics": {"port": 8002, "upstream": "noti"}},
            "board": {"metrics": {"port": 8000}},
        }
    }
)


def _settings(tmp_path: Path, text: str = ""):  # type: ignore[no-untyped-def]
    env = tmp_path / ".env"
    env.write_text(text)
    return load_stack_settings(env, environ={})


# -- OTEL keys ----------------------------------------------------------------


def test_otlp_endpoint_follows_the_metrics_upstream(tmp_path: Path) -> None:
    otlp = OtlpEndpoints.from_stack(
        _settings(tmp_path, "INFRA_PUBLIC_HOST=10.0.0.5\nOTLP_HTTP_PORT=5318\n")
    )
    assert otlp.env_for(MANIFEST.service("web")) == {
        "OTEL_SERVICE_NAME": "web",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://10.0.0.5:5318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    # A host process (upstream "host", the default) gets the published port too.
    assert otlp.url_for(MANIFEST.service("board")) == "http://10.0.0.5:5318"
    # A compose service reaches the collector by name on the stack's networks.
    assert otlp.url_for(MANIFEST.service("noti")) == "http://otelcol:4318"


def test_provision_writes_otel_keys_and_a_run_without_the_layer_keeps_them(
    tmp_path: Path,
) -> None:
    env_dir = tmp_path / "env"
    otlp = OtlpEndpoints("http://127.0.0.1:4318")
    provision(MANIFEST, env_dir=env_dir, postgres=None, redis=None, otlp=otlp)
    web = read_service_env(env_dir, "web").values
    assert web["OTEL_SERVICE_NAME"] == "web"
    assert web["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    assert read_service_env(env_dir, "noti").values["OTEL_EXPORTER_OTLP_ENDPOINT"] == (
        "http://otelcol:4318"
    )
    # A run that does not know the layer (otlp=None) must not drop them.
    report = provision(MANIFEST, env_dir=env_dir, postgres=None, redis=None)
    assert read_service_env(env_dir, "web").values == web
    assert {row.change for row in report.rows} == {"unchanged"}
    # A partial run (one service) leaves the others' files alone and keeps its own keys.
    provision(MANIFEST, env_dir=env_dir, postgres=None, redis=None, services=["board"])
    assert read_service_env(env_dir, "board").values["OTEL_SERVICE_NAME"] == "board"


def test_otel_keys_follow_a_changed_port(tmp_path: Path) -> None:
    env_dir = tmp_path / "env"
    provision(
        MANIFEST, env_dir=env_dir, postgres=None, redis=None, otlp=OtlpEndpoints("http://h:1")
    )
    provision(
        MANIFEST, env_dir=env_dir, postgres=None, redis=None, otlp=OtlpEndpoints("http://h:2")
    )
    assert read_service_env(env_dir, "web").values["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://h:2"


# -- settings -----------------------------------------------------------------


def test_pipeline_settings_defaults(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert (settings.logs_port, settings.logs_retention) == (9428, "7d")
    assert (settings.otlp_grpc_port, settings.otlp_http_port) == (4317, 4318)
    assert (settings.traces_ui_port, settings.traces_retention) == (16686, "168h")


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("LOGS_RETENTION=7 days", "LOGS_RETENTION"),
        ("LOGS_RETENTION=0d", "LOGS_RETENTION"),
        # Jaeger's badger TTL is a Go duration: no days.
        ("TRACES_RETENTION=7d", "TRACES_RETENTION"),
        ("OTLP_HTTP_PORT=70000", "OTLP_HTTP_PORT"),
        ("TRACES_UI_PORT=0", "TRACES_UI_PORT"),
    ],
)
def test_bad_pipeline_settings_are_rejected_naming_the_field(
    tmp_path: Path, line: str, field: str
) -> None:
    with pytest.raises(ConfigError, match=field):
        _settings(tmp_path, line + "\n")


def test_stream_filter_quotes_values() -> None:
    assert stream_filter({"compose.service": 'a"b', "compose.project": "p"}) == (
        '{compose.service="a\\"b",compose.project="p"}'
    )


# -- the collector's config and the builder manifest --------------------------


def _components(text: str, section: str) -> set[str]:
    """Component ids of one top-level section (``receivers:`` ...) of a YAML file."""
    match = re.search(rf"^{section}:\n((?:(?:  .*)?\n)*)", text, re.M)
    assert match, section
    return set(re.findall(r"^  ([a-z_]+)(?:/[\w-]+)?:", match.group(1), re.M))


def _built(kind: str) -> set[str]:
    text = BUILDER_MANIFEST.read_text()
    match = re.search(rf"^{kind}:\n((?:(?:  .*|#.*)?\n)*)", text, re.M)
    assert match, kind
    return set(re.findall(r"gomod: \S+/(\w+) v", match.group(1)))


# The builder's module names and the config's component types.
_TYPE_OF_MODULE = {
    "otlpreceiver": "otlp",
    "filelogreceiver": "file_log",
    "batchprocessor": "batch",
    "memorylimiterprocessor": "memory_limiter",
    "resourceprocessor": "resource",
    "otlpexporter": "otlp_grpc",
    "otlphttpexporter": "otlp_http",
    "healthcheckextension": "health_check",
}


@pytest.mark.parametrize("kind", ["receivers", "processors", "exporters", "extensions"])
def test_collector_config_uses_only_components_the_stand_in_is_built_with(kind: str) -> None:
    used = _components(COLLECTOR_CONFIG.read_text(), kind)
    built = {_TYPE_OF_MODULE[module] for module in _built(kind)}
    assert used <= built, f"{kind} {sorted(used - built)} are not in {BUILDER_MANIFEST}"
    assert used == built, f"{kind} {sorted(built - used)} are built but unused: drop them"


def test_collector_versions_match_the_pinned_image() -> None:
    versions = set(re.findall(r"gomod: \S+ (v0\.\d+\.\d+)", BUILDER_MANIFEST.read_text()))
    compose = (ROOT / "compose" / "observability.yaml").read_text()
    image = re.search(r"OTELCOL_IMAGE:-otel/opentelemetry-collector-contrib:(\S+)\}", compose)
    assert image is not None
    assert versions == {f"v{image.group(1)}"}


def test_every_stack_service_logs_its_compose_labels() -> None:
    for path in sorted((ROOT / "compose").glob("*.yaml")):
        text = path.read_text()
        if "\nservices:\n" not in text:
            continue
        body = text.split("\nservices:\n", 1)[1]
        body = re.split(r"^\S", body, maxsplit=1, flags=re.M)[0]
        blocks = re.split(r"^  (?=[a-z])", body, flags=re.M)
        for block in filter(str.strip, blocks):
            name = block.split(":", 1)[0]
            assert "\n    logging: *container-logs\n" in block, f"{path.name}: {name}"
        assert "labels: com.docker.compose.service,com.docker.compose.project," in text, path
