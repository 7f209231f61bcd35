"""End-to-end checks of the layer's pipeline, for ``inv smoke`` and the tests.

- :func:`container_log_round_trip`: a line written by a container of the
  stack reaches the log store, found by its compose labels.
- :func:`span_round_trip`: a span sent to the collector's OTLP/HTTP port is
  found in the trace store.
"""

from __future__ import annotations

import time
import uuid

from infra_lib.errors import ServiceUnavailable
from infra_lib.observability.logstore import LogStore, stream_filter
from infra_lib.observability.traces import TraceStore, send_span
from infra_lib.stack.settings import StackSettings

__all__ = ["LOG_PROBE_SERVICE", "container_log_round_trip", "span_round_trip"]

#: The container that writes the check's line: the log store itself, whose
#: image (official or stand-in) has a shell and runs as root.
LOG_PROBE_SERVICE = "victorialogs"


def container_log_round_trip(settings: StackSettings, *, timeout: float = 30.0) -> str:
    """Write a unique line to the ``victorialogs`` container's stdout and find it by label."""
    from python_on_whales import DockerClient
    from python_on_whales.exceptions import DockerException

    project = settings.compose_project_name
    marker = f"infra-smoke-log-{uuid.uuid4().hex}"
    docker = DockerClient()
    try:
        found = docker.container.list(
            filters=[
                ("label", f"com.docker.compose.project={project}"),
                ("label", f"com.docker.compose.service={LOG_PROBE_SERVICE}"),
            ]
        )
        if not found:
            raise ServiceUnavailable(
                f"no running {LOG_PROBE_SERVICE} container in project {project!r}",
                service=LOG_PROBE_SERVICE,
            )
        container = found[0]
        # PID 1's stdout is what Docker's json-file driver records.
        docker.container.execute(container, ["sh", "-c", f"echo {marker} > /proc/1/fd/1"])
    except DockerException as exc:
        raise ServiceUnavailable(
            f"could not write a line in the {LOG_PROBE_SERVICE} container: {exc}",
            service=LOG_PROBE_SERVICE,
        ) from exc
    start = time.monotonic()
    labels = {"compose.project": project, "compose.service": LOG_PROBE_SERVICE}
    records = LogStore.from_stack(settings).wait_for(
        f'{stream_filter(labels)} "{marker}"', timeout=timeout
    )
    name = records[0].get("container.name", container.name)
    return (
        f"line from {name} found by compose.service={LOG_PROBE_SERVICE} "
        f"in {time.monotonic() - start:.1f} s"
    )


def span_round_trip(settings: StackSettings, *, timeout: float = 30.0) -> str:
    """Send one span over OTLP/HTTP and wait until Jaeger's API returns it."""
    url = f"http://{settings.url_host}:{settings.otlp_http_port}"
    start = time.monotonic()
    trace_id = send_span(url, service_name="infra-smoke", name="smoke round trip")
    TraceStore.from_stack(settings).wait_for(trace_id, timeout=timeout)
    return f"span {trace_id[:8]}... via OTLP/HTTP in Jaeger in {time.monotonic() - start:.1f} s"
