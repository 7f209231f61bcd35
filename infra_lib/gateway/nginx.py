"""The gateway's nginx config, rendered once from the route table and settings.

Only values validated upstream reach the text: route paths (a safe
character set, see :mod:`infra_lib.manifest`), service and Compose names,
DNS names, nginx sizes and times (:class:`~infra_lib.stack.settings.StackSettings`).
Nothing here quotes or escapes, because nothing needs it.

Upstreams that are containers are named through a variable, so nginx looks
them up when a request comes (Docker's DNS at 127.0.0.11) instead of when it
starts: a stopped container gives that route a 502, not a gateway that
refuses to start. Processes on the host are fixed ``upstream`` blocks
(``host.docker.internal`` is in the container's /etc/hosts, which nginx's
resolver does not read) with connections kept alive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from infra_lib.gateway.hostnames import is_dns_name, is_local_name
from infra_lib.gateway.layer import CONTAINER_ROOT
from infra_lib.gateway.routes import Route, VirtualHost
from infra_lib.stack.settings import StackSettings

__all__ = ["GatewayOptions", "render_config"]


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    """What the config takes from ``.env`` (see ``GATEWAY_*`` in .env.example)."""

    host: str
    public_host: str
    https_port: int
    max_body_size: str
    s3_max_body_size: str
    connect_timeout: str
    read_timeout: str
    websocket_timeout: str
    hsts: bool

    @classmethod
    def from_settings(cls, settings: StackSettings) -> GatewayOptions:
        """The options for ``settings``; HSTS ``auto`` is off for localhost and IPs."""
        hsts = settings.gateway_hsts == "on" or (
            settings.gateway_hsts == "auto" and not is_local_name(settings.gateway_host)
        )
        return cls(
            host=settings.gateway_host,
            public_host=settings.infra_public_host,
            https_port=settings.gateway_https_port,
            max_body_size=settings.gateway_max_body_size,
            s3_max_body_size=settings.gateway_s3_max_body_size,
            connect_timeout=settings.gateway_connect_timeout,
            read_timeout=settings.gateway_read_timeout,
            websocket_timeout=settings.gateway_websocket_timeout,
            hsts=hsts,
        )


def _upstream_name(route: Route) -> str:
    return "host_" + route.upstream.rsplit(":", 1)[1]


def _security_headers(options: GatewayOptions, *, frames: bool = False) -> list[str]:
    lines = [
        "add_header X-Content-Type-Options nosniff always;",
        "add_header Referrer-Policy strict-origin-when-cross-origin always;",
    ]
    if not frames:
        lines.append("add_header X-Frame-Options DENY always;")
    if options.hsts:
        lines.append('add_header Strict-Transport-Security "max-age=31536000" always;')
    return lines


_FORWARDED = [
    "proxy_set_header Host $http_host;",
    "proxy_set_header X-Real-IP $remote_addr;",
    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    "proxy_set_header X-Forwarded-Proto https;",
    "proxy_set_header X-Forwarded-Host $http_host;",
]

_WEBSOCKET = [
    "proxy_set_header Upgrade $http_upgrade;",
    "proxy_set_header Connection $connection_upgrade;",
]

# The gateway's own answers when an upstream does not: they name the service
# and route (set per location) and nothing of the inside (no address, no nginx).
_ERROR_PAGES = [
    "location @upstream_down_json {",
    "    default_type application/json;",
    '    return 502 \'{"error":"bad gateway","service":"$infra_service","route":"$infra_route",'
    '"detail":"the service behind this route is not answering"}\\n\';',
    "}",
    "location @upstream_slow_json {",
    "    default_type application/json;",
    '    return 504 \'{"error":"gateway timeout","service":"$infra_service",'
    '"route":"$infra_route","detail":"the service behind this route did not answer in time"}\\n\';',
    "}",
    "location @upstream_down_html {",
    "    default_type text/html;",
    "    return 502 '<!doctype html><title>502 Bad Gateway</title><h1>502 Bad Gateway</h1>"
    "<p>$infra_service ($infra_route) is not answering.</p>\\n';",
    "}",
    "location @upstream_slow_html {",
    "    default_type text/html;",
    "    return 504 '<!doctype html><title>504 Gateway Timeout</title><h1>504 Gateway Timeout"
    "</h1><p>$infra_service ($infra_route) did not answer in time.</p>\\n';",
    "}",
]

_HEALTH = [
    "location = /health {",
    "    default_type application/json;",
    '    return 200 \'{"status":"ok"}\\n\';',
    "}",
]


def _route_body(route: Route, options: GatewayOptions) -> list[str]:
    kind = "json" if route.answers_json else "html"
    lines = [
        f"set $infra_service {route.service};",
        f"set $infra_route {route.path};",
    ]
    if route.on_host:
        lines.append(f"proxy_pass http://{_upstream_name(route)};")
    else:
        lines += [f"set $infra_upstream {route.upstream};", "proxy_pass http://$infra_upstream;"]
    lines += ["proxy_http_version 1.1;", *_FORWARDED]
    if route.kind == "websocket":
        lines += [*_WEBSOCKET, f"proxy_read_timeout {options.websocket_timeout};"]
        lines.append(f"proxy_send_timeout {options.websocket_timeout};")
    else:
        # Keep-alive to the upstream: no "Connection: close" from the client.
        lines.append('proxy_set_header Connection "";')
    lines += [
        f"error_page 502 503 @upstream_down_{kind};",
        f"error_page 504 @upstream_slow_{kind};",
    ]
    return lines


def _locations(route: Route, options: GatewayOptions) -> list[str]:
    body = ["    " + line for line in _route_body(route, options)]
    if route.path == "/":
        return ["location / {", *body, "}"]
    # The path itself and what lies under it, but not /api/boardsX.
    return [
        f"location = {route.path} {{",
        *body,
        "}",
        f"location {route.path}/ {{",
        *body,
        "}",
    ]


def _indent(lines: Sequence[str], depth: int) -> list[str]:
    pad = "    " * depth
    return [pad + line if line else "" for line in lines]


def _https_listen(default: bool) -> str:
    return f"listen 443 ssl{' default_server' if default else ''};"


def _main_server(routes: Sequence[Route], options: GatewayOptions) -> list[str]:
    names = ["localhost", options.host]
    # Only a plain DNS name goes into the config; the default server takes
    # any other Host anyway.
    if is_dns_name(options.public_host):
        names.append(options.public_host)
    lines = [
        "server {",
        "    " + _https_listen(True),
        f"    server_name {' '.join(dict.fromkeys(names))};",
        "    set $infra_service gateway;",
        "    set $infra_route -;",
        *_indent(_security_headers(options), 1),
        *_indent(_HEALTH, 1),
        *_indent(_ERROR_PAGES, 1),
    ]
    for route in routes:
        lines += _indent(_locations(route, options), 1)
    if not any(r.path == "/" for r in routes):
        lines += _indent(
            [
                "location / {",
                "    default_type application/json;",
                '    return 404 \'{"error":"not found","detail":"no route of the gateway '
                "matches this path\"}\\n';",
                "}",
            ],
            1,
        )
    lines.append("}")
    return lines


def _virtual_server(vhost: VirtualHost, options: GatewayOptions) -> list[str]:
    body = [
        f"set $infra_service {vhost.service};",
        "set $infra_route /;",
        f"proxy_pass http://stack_{vhost.prefix};",
        "proxy_http_version 1.1;",
        *_FORWARDED,
        "error_page 502 503 @upstream_down_json;",
        "error_page 504 @upstream_slow_json;",
    ]
    if vhost.kind == "s3":
        # Presigned URLs are signed for this Host header: it goes through as
        # sent. Uploads and downloads stream instead of being spooled to disk.
        body += [
            'proxy_set_header Connection "";',
            f"client_max_body_size {options.s3_max_body_size};",
            "proxy_request_buffering off;",
            "proxy_buffering off;",
        ]
    else:
        body += [
            *_WEBSOCKET,
            f"proxy_read_timeout {options.websocket_timeout};",
            f"proxy_send_timeout {options.websocket_timeout};",
        ]
    return [
        "server {",
        "    " + _https_listen(False),
        f"    server_name {vhost.prefix}.{options.host};",
        *_indent(_security_headers(options), 1),
        *_indent(_ERROR_PAGES, 1),
        "    location / {",
        *_indent(body, 2),
        "    }",
        "}",
    ]


def render_config(
    routes: Sequence[Route], vhosts: Sequence[VirtualHost], options: GatewayOptions
) -> str:
    """The whole ``nginx.conf`` for ``routes`` and ``vhosts``."""
    https_suffix = "" if options.https_port == 443 else f":{options.https_port}"
    upstreams: list[str] = []
    for route in routes:
        if route.on_host:
            block = [
                f"upstream {_upstream_name(route)} {{",
                # Tried on every request: a service restarted on the host is
                # reachable at once, not after a fail_timeout.
                f"    server {route.upstream} max_fails=0;",
                "    keepalive 16;",
                "}",
            ]
            if block[0] not in upstreams:
                upstreams += block
    # The stack's own services are fixed upstream blocks, so connections to
    # them are kept alive (nginx 1.22 re-resolves a name only in a variable,
    # which costs a new connection per request: half the throughput). Their
    # addresses are looked up when nginx (re)loads: `inv up` starts them
    # first and reloads the gateway after.
    for vhost in vhosts:
        upstreams += [
            f"upstream stack_{vhost.prefix} {{",
            f"    server {vhost.upstream} max_fails=0;",
            "    keepalive 32;",
            "}",
        ]
    http = [
        "include /etc/nginx/mime.types;",
        "default_type application/octet-stream;",
        "server_tokens off;",
        "sendfile on;",
        "keepalive_timeout 65s;",
        # Writable in both the official image and the stand-in.
        "client_body_temp_path /tmp/nginx-client-body;",
        "proxy_temp_path /tmp/nginx-proxy;",
        "fastcgi_temp_path /tmp/nginx-fastcgi;",
        "uwsgi_temp_path /tmp/nginx-uwsgi;",
        "scgi_temp_path /tmp/nginx-scgi;",
        "log_format gateway '$remote_addr [$time_local] \"$request\" $status $body_bytes_sent '",
        "                   'service=$infra_service route=$infra_route upstream=$upstream_addr '",
        "                   'upstream_status=$upstream_status request_time=$request_time';",
        # Buffered: a write to Docker's log pipe per request costs a tenth
        # of the throughput; lines show within a second.
        "access_log /var/log/nginx/access.log gateway buffer=64k flush=1s;",
        f"client_max_body_size {options.max_body_size};",
        f"proxy_connect_timeout {options.connect_timeout};",
        f"proxy_send_timeout {options.read_timeout};",
        f"proxy_read_timeout {options.read_timeout};",
        # Docker's embedded DNS; short validity so a recreated container's
        # new address is picked up.
        "resolver 127.0.0.11 valid=10s ipv6=off;",
        "resolver_timeout 5s;",
        "map $http_upgrade $connection_upgrade {",
        "    default upgrade;",
        "    '' close;",
        "}",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "ssl_prefer_server_ciphers off;",
        "ssl_session_cache shared:infra_tls:10m;",
        "ssl_session_timeout 1h;",
        f"ssl_certificate {CONTAINER_ROOT}/tls/cert.pem;",
        f"ssl_certificate_key {CONTAINER_ROOT}/tls/key.pem;",
        "",
        *upstreams,
        "",
        "# Plain HTTP: the gateway's health for the healthcheck, a redirect for the rest.",
        "server {",
        "    listen 80 default_server;",
        "    set $infra_service gateway;",
        "    set $infra_route -;",
        *_indent(_HEALTH, 1),
        "    location / {",
        f"        return 301 https://$host{https_suffix}$request_uri;",
        "    }",
        "}",
        "",
        *_main_server(routes, options),
    ]
    for vhost in vhosts:
        http += ["", *_virtual_server(vhost, options)]
    lines = [
        "# Generated by infra_lib.gateway from infra.toml and .env: edits are overwritten.",
        "user nginx;",
        "worker_processes auto;",
        "pid /var/run/nginx.pid;",
        "error_log /var/log/nginx/error.log notice;",
        # After a reload, old workers keep serving their open connections
        # (WebSockets included) for at most this long.
        f"worker_shutdown_timeout {options.websocket_timeout};",
        "events {",
        "    worker_connections 1024;",
        "}",
        "http {",
        *_indent(http, 1),
        "}",
    ]
    return "\n".join(lines) + "\n"
