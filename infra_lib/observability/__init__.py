"""The observability layer: metrics, logs and traces of the stack and the team's services.

One Compose profile (``observability``, in ``compose/observability.yaml``)
runs VictoriaMetrics, vmalert, the PostgreSQL and Redis exporters,
VictoriaLogs, an OpenTelemetry Collector and Jaeger. This package holds what
infra_lib does for it:

- :mod:`~infra_lib.observability.layer`: whether it is on, where its files live;
- :mod:`~infra_lib.observability.credentials`: the exporters' least-privilege
  monitoring role and ACL user, and MinIO's metrics token;
- :mod:`~infra_lib.observability.scrape`: the scrape config, generated from
  the manifest and settings, validated, rendered once;
- :mod:`~infra_lib.observability.store`: the metrics store's HTTP API
  (queries, targets, alerts, reload) and the server's own config check;
- :mod:`~infra_lib.observability.report`: the ``inv metrics`` table and the
  smoke checks;
- :mod:`~infra_lib.observability.otlp`: the ``OTEL_*`` keys provisioning
  writes into each service's env file;
- :mod:`~infra_lib.observability.logstore` and
  :mod:`~infra_lib.observability.traces`: the log store's LogsQL API and
  Jaeger's query API (plus a span sent over OTLP/HTTP);
- :mod:`~infra_lib.observability.pipeline`: the log and span round trips of
  ``inv smoke``.

Dashboards are not part of it yet. Import the submodules; this package
imports nothing by itself.
"""
