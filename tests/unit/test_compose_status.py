"""Reading the engine's container list and Compose's progress lines, without an engine."""

from __future__ import annotations

from pathlib import Path

from infra_lib.stack.compose import Stack, StackPaths, _parse_ps
from infra_lib.stack.settings import load_stack_settings


def test_the_container_list_gives_state_and_health_per_service() -> None:
    text = "\n".join(
        [
            "aaa\tpostgres\trunning\tUp 2 minutes (healthy)",
            "bbb\tredis\trunning\tUp 3 seconds (health: starting)",
            "ccc\tminio\trunning\tUp 1 hour (unhealthy)",
            "ddd\tpostgres-exporter\trunning\tUp 2 minutes",
            "eee\tlivekit\texited\tExited (1) 5 seconds ago",
            "fff\t\trunning\tUp 1 minute",  # not a Compose service's container
            "garbage",
        ]
    )
    rows = _parse_ps(text)
    assert {k: (r.state, r.health) for k, r in rows.items()} == {
        "postgres": ("running", "healthy"),
        "redis": ("running", "starting"),
        "minio": ("running", "unhealthy"),
        "postgres-exporter": ("running", "none"),
        "livekit": ("exited", "none"),
    }
    assert rows["postgres"].id == "aaa"


def test_progress_lines_name_the_services_compose_started(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("COMPOSE_PROJECT_NAME=my-proj\n")
    settings = load_stack_settings(env, environ={})
    stack = Stack(settings, StackPaths.for_root(tmp_path, env))
    started = [
        stack._started_in(line)
        for line in (
            " Container my-proj-redis-1  Recreated",
            " Container my-proj-postgres-exporter-1  Started",
            " Container my-proj-minio-1  Running",
            " Container my-proj-livekit-1  Waiting",
            " Network my-proj_default  Created",
            "redis-1  | Ready to accept connections",
        )
    ]
    assert started == [["redis"], ["postgres-exporter"], [], [], [], []]


def test_dotenv_values_are_read_like_before(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "# a comment\nexport COMPOSE_PROJECT_NAME='quoted-name'\nPOSTGRES_PORT=6543  # moved\n"
        "REDIS_PORT=\nUNKNOWN_KEY=1\n"
    )
    settings = load_stack_settings(env, environ={"POSTGRES_PORT": "7654"})
    assert settings.compose_project_name == "quoted-name"
    assert settings.postgres_port == 7654  # the environment wins
    assert settings.redis_port == 6379  # empty means unset
    assert load_stack_settings(env, environ={}).postgres_port == 6543
