"""The gateway: one HTTPS front door for the team's APIs, WebSockets, storage and LiveKit.

One Compose profile (``gateway``, in ``compose/gateway.yaml``) runs nginx.
This package holds what infra_lib does for it:

- :mod:`~infra_lib.gateway.layer`: whether it is on, where its files live,
  the public URLs it serves;
- :mod:`~infra_lib.gateway.routes`: the route table, built from the
  manifest's ``http`` entries plus MinIO and LiveKit;
- :mod:`~infra_lib.gateway.nginx`: the nginx config rendered from the table;
- :mod:`~infra_lib.gateway.tls`: the local certificate authority and the
  gateway's certificate;
- :mod:`~infra_lib.gateway.apply`: config checked with ``nginx -t`` in the
  gateway's image, then put in place and reloaded gracefully;
- :mod:`~infra_lib.gateway.report`: the ``inv routes`` table.

Import the submodules; this package imports nothing by itself.
"""
