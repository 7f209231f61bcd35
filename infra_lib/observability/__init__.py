"""The observability layer: metrics of the stack and of the team's services.

One Compose profile (``observability``, in ``compose/observability.yaml``)
runs VictoriaMetrics, vmalert and the PostgreSQL and Redis exporters. This
package holds what infra_lib does for it:

- :mod:`~infra_lib.observability.layer`: whether it is on, where its files live;
- :mod:`~infra_lib.observability.credentials`: the exporters' least-privilege
  monitoring role and ACL user, and MinIO's metrics token;
- :mod:`~infra_lib.observability.scrape`: the scrape config, generated from
  the manifest and settings, validated, rendered once;
- :mod:`~infra_lib.observability.store`: the metrics store's HTTP API
  (queries, targets, alerts, reload) and the server's own config check;
- :mod:`~infra_lib.observability.report`: the ``inv metrics`` table and the
  smoke checks.

Logs, traces and dashboards are not part of it yet. Import the submodules;
this package imports nothing by itself.
"""
