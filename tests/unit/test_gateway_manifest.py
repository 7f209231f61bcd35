"""The manifest's `http` entries: the gateway's routes, checked at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra_lib.errors import ManifestError
from infra_lib.manifest import load_manifest, parse_manifest, routes_overlap

ROOT = Path(__file__).resolve().parents[2]

#: The reference team's route table (the design documents' gateway).
REFERENCE_ROUTES = {
    "/api/users": ("user-service", 8080, "http"),
    "/api/auth": ("auth-service", 8090, "http"),
    "/api/boards": ("board-service", 8000, "http"),
    "/api/chats": ("chat-service", 8001, "http"),
    "/api/notifications": ("noti-service", 8002, "http"),
    "/api/storage": ("storage-service", 8003, "http"),
    "/api/video": ("video-service", 8004, "http"),
    "/ws/chat": ("chat-service", 8001, "websocket"),
    "/ws/notifications": ("noti-service", 8002, "websocket"),
}


def test_reference_manifest_ships_the_reference_route_table() -> None:
    from infra_lib.gateway.routes import build_routes

    routes = build_routes(load_manifest(ROOT / "infra.toml"))
    found = {r.path: (r.service, int(r.upstream.rsplit(":", 1)[1]), r.kind) for r in routes}
    assert found == REFERENCE_ROUTES
    assert all(r.on_host and r.upstream.startswith("host.docker.internal:") for r in routes)


def _error(http: object, *, other: object | None = None) -> str:
    services: dict[str, object] = {"board-service": {"http": http}}
    if other is not None:
        services["chat-service"] = {"http": other}
    with pytest.raises(ManifestError) as info:
        parse_manifest({"services": services}, path="infra.toml")
    return str(info.value)


@pytest.mark.parametrize(
    ("http", "field"),
    [
        ({"port": 0, "routes": ["/api/boards"]}, "http.port"),
        ({"port": 70000, "routes": ["/api/boards"]}, "http.port"),
        ({"port": "eight", "routes": ["/api/boards"]}, "http.port"),
        ({"port": 8000, "routes": ["api/boards"]}, "http.routes"),
        ({"port": 8000, "routes": ["/api/boards/"]}, "http.routes"),
        ({"port": 8000, "routes": ["/api//boards"]}, "http.routes"),
        ({"port": 8000, "routes": ["/api/../admin"]}, "http.routes"),
        ({"port": 8000, "routes": ["/api/boards;"]}, "http.routes"),
        ({"port": 8000, "routes": ["/api/{id}"]}, "http.routes"),
        ({"port": 8000, "routes": ["/api/bo ards"]}, "http.routes"),
        ({"port": 8000, "websockets": ["/ws?x=1"]}, "http.websockets"),
        ({"port": 8000, "routes": ["/health"]}, "http.routes"),
        ({"port": 8000, "routes": ["/health/deep"]}, "http.routes"),
        ({"port": 8000, "routes": ["/a"], "health": "health"}, "http.health"),
        ({"port": 8000, "routes": ["/a"], "health": "/h;x"}, "http.health"),
        ({"port": 8000, "routes": ["/a"], "upstream": "Board Service"}, "http.upstream"),
        ({"port": 8000, "routes": ["/a"], "proto": "h2"}, "http.proto"),
        ({"port": 8000}, "http"),
        ({"port": 8000, "routes": ["/api/boards"], "websockets": ["/api/boards/ws"]}, "http"),
    ],
)
def test_bad_http_entries_are_rejected_naming_service_and_field(http: object, field: str) -> None:
    message = _error(http)
    assert f"service 'board-service', field '{field}'" in message


def test_routes_of_two_services_may_not_overlap() -> None:
    message = _error(
        {"port": 8000, "routes": ["/api/boards"]},
        other={"port": 8001, "routes": ["/api/boards/chat"]},
    )
    assert "service 'chat-service', field 'http.routes'" in message
    assert "'/api/boards/chat' overlaps '/api/boards' of service 'board-service'" in message
    message = _error(
        {"port": 8000, "routes": ["/api/boards"]},
        other={"port": 8001, "websockets": ["/api/boards"]},
    )
    assert "field 'http.websockets'" in message


def test_sibling_prefixes_and_the_catch_all_do_not_overlap() -> None:
    assert not routes_overlap("/api/boards", "/api/boardsx")
    assert not routes_overlap("/", "/api")
    assert routes_overlap("/api", "/api/boards")
    manifest = parse_manifest(
        {
            "services": {
                "board-service": {"http": {"port": 8000, "routes": ["/api/boards"]}},
                "web": {"http": {"port": 3000, "routes": ["/"], "upstream": "web"}},
                "chat-service": {"http": {"port": 8001, "routes": ["/api/boardsx"]}},
            }
        }
    )
    from infra_lib.gateway.routes import build_routes

    assert [r.path for r in build_routes(manifest)][-1] == "/"
