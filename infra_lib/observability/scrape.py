"""The metrics store's scrape config, generated from the manifest and settings.

Built as data (:class:`ScrapeJob`), validated, then rendered once: the file
is JSON, which is YAML too, so no YAML library is needed and nothing is
templated by hand. :func:`write_scrape_config` writes it only when it
changed; the server's own checker runs before it is applied (see
:func:`infra_lib.observability.store.check_scrape_config`).

Jobs of the stack itself carry ``layer="stack"``, those of the team's
services (``metrics = {...}`` in ``infra.toml``) ``layer="service"`` and
``service="<name>"``: a team service that is not running on this machine is
reported, but is not a fault of the stack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from infra_lib.errors import ManifestError
from infra_lib.manifest import Manifest
from infra_lib.observability.layer import LayerPaths
from infra_lib.stack.envfile import write_private_file
from infra_lib.stack.settings import StackSettings

__all__ = [
    "HOST_GATEWAY",
    "LIVEKIT_METRICS_PORT",
    "STACK_JOBS",
    "ScrapeJob",
    "build_scrape_jobs",
    "render_scrape_config",
    "write_scrape_config",
]

#: How a container reaches a process on the developer's machine
#: (``extra_hosts: host-gateway`` in compose/observability.yaml).
HOST_GATEWAY = "host.docker.internal"
#: ``prometheus_port`` in LiveKit's config (compose/livekit.yaml).
LIVEKIT_METRICS_PORT = 6789
#: Inside the metrics store's container (a Compose secret).
MINIO_TOKEN_FILE = "/run/secrets/minio-metrics-token"  # noqa: S105 - a path, not a secret

Layer = Literal["stack", "service"]


@dataclass(frozen=True, slots=True)
class ScrapeJob:
    """One scrape job with one target."""

    name: str
    target: str
    path: str = "/metrics"
    scheme: Literal["http", "https"] = "http"
    layer: Layer = "stack"
    interval: str | None = None
    bearer_token_file: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def as_config(self) -> dict[str, Any]:
        """The job as a Prometheus ``scrape_configs`` entry."""
        job: dict[str, Any] = {"job_name": self.name, "metrics_path": self.path}
        if self.scheme != "http":
            job["scheme"] = self.scheme
        if self.interval is not None:
            job["scrape_interval"] = self.interval
        if self.bearer_token_file is not None:
            job["bearer_token_file"] = self.bearer_token_file
        job["static_configs"] = [
            {"targets": [self.target], "labels": {"layer": self.layer, **self.labels}}
        ]
        return job


#: The stack's own targets, by job name: what the layer scrapes without any
#: configuration. coturn is absent: its Prometheus exporter needs a build
#: with ``--prometheus`` that Debian's package (the stand-in here) lacks.
STACK_JOBS: tuple[ScrapeJob, ...] = (
    ScrapeJob("victoriametrics", "localhost:8428"),
    ScrapeJob("vmalert", "vmalert:8880"),
    ScrapeJob("postgres", "postgres-exporter:9187"),
    ScrapeJob("redis", "redis-exporter:9121"),
    # Free space of the data volumes (mounted at /volumes/<volume>).
    ScrapeJob("node", "node-exporter:9100"),
    ScrapeJob(
        "minio", "minio:9000", "/minio/v2/metrics/cluster", bearer_token_file=MINIO_TOKEN_FILE
    ),
    ScrapeJob("livekit", f"livekit:{LIVEKIT_METRICS_PORT}"),
    ScrapeJob("victorialogs", "victorialogs:9428"),
    # The collector's own telemetry (service.telemetry in its config).
    ScrapeJob("otelcol", "otelcol:8888"),
    # Jaeger's admin port serves its metrics.
    ScrapeJob("jaeger", "jaeger:14269"),
)


def build_scrape_jobs(manifest: Manifest) -> list[ScrapeJob]:
    """The stack's jobs, then one per manifest service that declares ``metrics``.

    Raises :class:`ManifestError` naming the service and field when a
    service's job would clash with another job.
    """
    jobs = list(STACK_JOBS)
    taken = {job.name: "the stack itself" for job in jobs}
    targets = {job.target: job.name for job in jobs}
    problems: list[str] = []
    where = manifest.path or "<manifest>"
    for service in manifest:
        metrics = service.metrics
        if metrics is None:
            continue
        host = HOST_GATEWAY if metrics.upstream == "host" else metrics.upstream
        job = ScrapeJob(
            service.name,
            f"{host}:{metrics.port}",
            metrics.path,
            metrics.scheme,
            layer="service",
            interval=metrics.interval,
            labels={"service": service.name},
        )
        if job.name in taken:
            problems.append(
                f"{where}: service {service.name!r}, field 'metrics': its scrape job would be "
                f"named {job.name!r}, which {taken[job.name]} uses; rename the service"
            )
            continue
        if job.target in targets:
            problems.append(
                f"{where}: service {service.name!r}, field 'metrics.port': {job.target} is "
                f"already scraped as job {targets[job.target]!r}; give each service its own port"
            )
            continue
        taken[job.name] = f"service {service.name!r}"
        targets[job.target] = job.name
        jobs.append(job)
    if problems:
        raise ManifestError("invalid manifest:\n  " + "\n  ".join(problems))
    return jobs


def render_scrape_config(settings: StackSettings, jobs: list[ScrapeJob]) -> str:
    """The file VictoriaMetrics reads with ``-promscrape.config``."""
    config = {
        "global": {
            "scrape_interval": settings.metrics_scrape_interval,
            "external_labels": {"project": settings.compose_project_name},
        },
        "scrape_configs": [job.as_config() for job in jobs],
    }
    return (
        "# Generated by infra_lib.observability.scrape from infra.toml and .env;\n"
        "# `inv up` and `inv provision` rewrite it. JSON is YAML, so this is both.\n"
        + json.dumps(config, indent=2)
        + "\n"
    )


def write_scrape_config(paths: LayerPaths, text: str) -> bool:
    """Write the scrape config if it differs; true when the file changed."""
    paths.make_dirs()
    path = paths.scrape_file
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    # Not secret, but private like the rest of env/: the token is elsewhere.
    write_private_file(path, text)
    return True
