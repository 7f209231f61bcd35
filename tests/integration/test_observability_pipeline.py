"""The layer's pipeline against the real servers: container logs, OTLP in, traces.

Uses the module fixture of test_observability.py, which switches the layer
on when it is off and back off afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from python_on_whales import Container

from infra_lib.errors import ConfigError
from infra_lib.manifest import load_manifest
from infra_lib.observability.logstore import LogStore, stream_filter
from infra_lib.observability.pipeline import container_log_round_trip, span_round_trip
from infra_lib.observability.store import MetricsStore
from infra_lib.observability.traces import TraceStore, send_span
from infra_lib.provisioning import read_service_env
from infra_lib.stack.compose import Stack
from infra_lib.stack.settings import load_stack_settings
from tests.integration import test_observability as _metrics_tests
from tests.integration.conftest import ROOT, run_inv

pytestmark = pytest.mark.integration

# The metrics tests' module fixture: the stack with the layer switched on.
layer = _metrics_tests.layer
_until = _metrics_tests._until

# Bounded waits: the collector polls files every 200 ms and batches for 1 s.
WAIT = 60.0
COMPOSE_LOG_LABELS = (
    "labels=com.docker.compose.service,com.docker.compose.project,"
    "com.docker.compose.container-number"
)


@pytest.fixture(scope="module")
def logs(layer: Stack) -> LogStore:
    return LogStore.from_stack(layer.settings)


@pytest.fixture(scope="module")
def traces(layer: Stack) -> TraceStore:
    return TraceStore.from_stack(layer.settings)


@pytest.fixture(scope="module")
def otlp_url(layer: Stack) -> str:
    return f"http://{layer.settings.url_host}:{layer.settings.otlp_http_port}"


@pytest.fixture(scope="module")
def shell_image(layer: Stack) -> str:
    """An image with a shell that is on this engine: the running log store's."""
    container = layer.docker.container.inspect(f"{layer.project_name}-victorialogs-1")
    return str(container.config.image)


def _throwaway(
    layer: Stack, image: str, script: str, *, labels: dict[str, str], log_labels: bool
) -> Container:
    options = [COMPOSE_LOG_LABELS] if log_labels else []
    return layer.docker.run(
        image,
        ["-c", script],
        entrypoint="sh",
        detach=True,
        labels=labels,
        log_options=options,
    )


@pytest.fixture
def cleanup(layer: Stack) -> Iterator[list[Container]]:
    made: list[Container] = []
    yield made
    for container in made:
        layer.docker.container.remove(container, force=True)


def test_status_lists_the_pipeline(layer: Stack) -> None:
    result = run_inv("status", "--probe")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("victorialogs", "jaeger", "otelcol"):
        assert name in result.stdout
    assert "OTLP/HTTP POST /v1/logs: 200" in result.stdout


def test_line_of_a_labelled_container_is_found_by_service_label(
    layer: Stack,
    logs: LogStore,
    shell_image: str,
    cleanup: list[Container],
) -> None:
    project = f"infra-logtest-{uuid.uuid4().hex[:8]}"
    marker = f"pipeline-test-{uuid.uuid4().hex}"
    labels = {
        "com.docker.compose.project": project,
        "com.docker.compose.service": "probe",
        "com.docker.compose.container-number": "1",
    }
    # Kept alive a while: a container removed at once takes its log file with it.
    cleanup.append(
        _throwaway(layer, shell_image, f"echo {marker}; sleep 120", labels=labels, log_labels=True)
    )
    query = stream_filter({"compose.service": "probe", "compose.project": project})
    records = logs.wait_for(query, timeout=WAIT)
    assert [r["_msg"] for r in records] == [marker]
    record = records[0]
    assert record["container.name"] == f"{project}-probe-1"
    assert record["service.name"] == "probe"
    assert record["container.id"] == cleanup[0].id
    assert record["log.iostream"] == "stdout"


def test_container_without_log_labels_is_still_found_by_its_id(
    layer: Stack,
    logs: LogStore,
    shell_image: str,
    cleanup: list[Container],
) -> None:
    marker = f"pipeline-unlabelled-{uuid.uuid4().hex}"
    container = _throwaway(
        layer, shell_image, f"echo {marker} >&2; sleep 120", labels={}, log_labels=False
    )
    cleanup.append(container)
    records = logs.wait_for(stream_filter({"container.id": container.id}), timeout=WAIT)
    assert records[0]["_msg"] == marker
    assert records[0]["log.iostream"] == "stderr"
    assert "compose.service" not in records[0]


def test_stack_services_logs_carry_their_labels(layer: Stack, logs: LogStore) -> None:
    # Written by the check itself (a line on the log store container's stdout).
    detail = container_log_round_trip(layer.settings, timeout=WAIT)
    assert f"{layer.project_name}-victorialogs-1" in detail
    # The same lines through `inv logs --query`, narrowed to this project and service.
    result = run_inv("logs", "victorialogs", "--query", '"infra-smoke-log" _time:1h', "--tail", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert f"{layer.project_name}-victorialogs-1 | infra-smoke-log-" in lines[0]


def test_otlp_trace_from_the_sdk_is_in_jaeger(otlp_url: str, traces: TraceStore) -> None:
    service = f"pipeline-test-{uuid.uuid4().hex[:8]}"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(f"{otlp_url}/v1/traces")))
    with provider.get_tracer("tests").start_as_current_span("parent") as parent:
        with provider.get_tracer("tests").start_as_current_span("child"):
            pass
        trace_id = format(parent.get_span_context().trace_id, "032x")
    provider.shutdown()
    spans = traces.wait_for(trace_id, timeout=WAIT)
    assert sorted(span["operationName"] for span in spans) == ["child", "parent"]
    # The UI's search lists it under its service name.
    _until("the service in Jaeger's list", lambda: service in traces.services(), timeout=WAIT)


def test_otlp_log_from_the_sdk_is_in_victorialogs(otlp_url: str, logs: LogStore) -> None:
    service = f"pipeline-test-{uuid.uuid4().hex[:8]}"
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(f"{otlp_url}/v1/logs"))
    )
    provider.get_logger("tests").emit(
        LogRecord(
            body=f"sent over OTLP by {service}",
            severity_text="WARN",
            severity_number=SeverityNumber.WARN,
        )
    )
    provider.shutdown()
    records = logs.wait_for(stream_filter({"service.name": service}), timeout=WAIT)
    assert records[0]["_msg"] == f"sent over OTLP by {service}"
    assert records[0]["severity_text"] == "WARN"


def test_otlp_metric_from_the_sdk_is_in_victoriametrics(layer: Stack, otlp_url: str) -> None:
    service = f"pipeline-test-{uuid.uuid4().hex[:8]}"
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(f"{otlp_url}/v1/metrics"), export_interval_millis=3_600_000
    )
    provider = MeterProvider(
        resource=Resource.create({"service.name": service}), metric_readers=[reader]
    )
    provider.get_meter("tests").create_counter("infra_pipeline_test_total").add(7)
    provider.force_flush()
    provider.shutdown()
    store = MetricsStore.from_stack(layer.settings)
    query = f'infra_pipeline_test_total{{service.name="{service}"}}'
    samples = _until(f"{query} in the metrics store", lambda: store.query(query), timeout=WAIT)
    assert samples[0].value == 7
    assert samples[0].labels["infra.stack"] == layer.project_name


def test_traces_survive_a_restart_of_the_trace_store(
    layer: Stack,
    otlp_url: str,
    traces: TraceStore,
) -> None:
    trace_id = send_span(otlp_url, service_name="pipeline-test", name="before restart")
    traces.wait_for(trace_id, timeout=WAIT)
    layer.docker.compose.restart(["jaeger"])
    spans = _until("the trace after Jaeger's restart", lambda: traces.trace(trace_id), timeout=WAIT)
    assert spans[0]["operationName"] == "before restart"
    # The collector re-connects and keeps exporting.
    span_round_trip(layer.settings, timeout=WAIT)


def test_env_files_get_the_otel_keys(layer: Stack, otlp_url: str) -> None:
    env_dir = ROOT / "env" / layer.project_name
    for service in load_manifest(ROOT / "infra.toml"):
        values = read_service_env(env_dir, service.name).values
        assert values["OTEL_SERVICE_NAME"] == service.name
        assert values["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
        if service.metrics is None or service.metrics.upstream == "host":
            assert values["OTEL_EXPORTER_OTLP_ENDPOINT"] == otlp_url
    # What a service would do with them: export to that endpoint.
    board = read_service_env(env_dir, "board-service").values
    trace_id = send_span(
        board["OTEL_EXPORTER_OTLP_ENDPOINT"], service_name="board-service", name="x"
    )
    TraceStore.from_stack(layer.settings).wait_for(trace_id, timeout=WAIT)


def test_pipeline_services_are_scrape_targets(layer: Stack) -> None:
    store = MetricsStore.from_stack(layer.settings)
    for job, series in (
        ("otelcol", "otelcol_process_uptime"),
        ("victorialogs", "vl_rows_ingested_total"),
        ("jaeger", "jaeger_build_info"),
    ):
        query = f'{{__name__=~"{series}.*",job="{job}"}}'
        _until(f"{query} scraped", lambda q=query: store.query(q), timeout=WAIT)


def test_collectors_own_checker_accepts_the_config_and_rejects_a_broken_one(
    layer: Stack,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    config = ROOT / "compose" / "observability" / "otelcol" / "config.yaml"
    image = str(layer.docker.container.inspect(f"{layer.project_name}-otelcol-1").config.image)
    env = {"INFRA_STACK": "x", "OTELCOL_MEMORY_LIMIT_MIB": "256", "OTELCOL_MEMORY_SPIKE_MIB": "64"}

    def validate(path: Path) -> str:
        return str(
            layer.docker.run(
                image,
                ["validate", "--config=/etc/otelcol-contrib/config.yaml"],
                volumes=[(path, "/etc/otelcol-contrib/config.yaml", "ro")],
                envs=env,
                remove=True,
            )
        )

    validate(config)
    broken = tmp_path / "config.yaml"
    broken.write_text(
        config.read_text().replace("exporters: [otlp_grpc/jaeger]", "exporters: [otlp_grpc/tempo]")
    )
    broken.chmod(0o644)
    from python_on_whales.exceptions import DockerException

    with pytest.raises(DockerException) as caught:
        validate(broken)
    assert caught.value.return_code == 1
    # The checker's message goes to the child's stderr, which Docker passes through.
    assert 'references exporter "otlp_grpc/tempo" which is not configured' in capfd.readouterr().err


def test_bad_retention_in_env_is_rejected_before_compose_runs(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("TRACES_RETENTION=7d\n")
    with pytest.raises(ConfigError, match="TRACES_RETENTION"):
        load_stack_settings(env, environ={})


def test_logs_are_kept_for_the_configured_retention(layer: Stack) -> None:
    container = layer.docker.container.inspect(f"{layer.project_name}-victorialogs-1")
    assert f"-retentionPeriod={layer.settings.logs_retention}" in container.config.cmd
    jaeger = layer.docker.container.inspect(f"{layer.project_name}-jaeger-1")
    assert f"BADGER_SPAN_STORE_TTL={layer.settings.traces_retention}" in jaeger.config.env
