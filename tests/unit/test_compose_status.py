"""Reading the engine's container list and Compose's progress lines, without an engine."""

from __future__ import annotations

from pathlib import Path

from infra_lib.stack.compose import Stack, StackPaths, _parse_ps, _PsRow, _unchanged
from infra_lib.stack.settings import load_stack_settings
from infra_lib.stack.upstate import UpState, fingerprint, read_state, write_state


def test_the_container_list_gives_state_and_health_per_service() -> None:
    text = "\n".join(
        [
            "aaa\tpostgres\trunning\tUp 2 minutes (healthy)\tpostgres:16",
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
    assert rows["postgres"].image == "postgres:16"
    assert rows["redis"].image == ""


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


def _compose_dir(tmp_path: Path) -> tuple[Path, Path, Path]:
    compose = tmp_path / "compose"
    compose.mkdir()
    (compose / "compose.yaml").write_text("include:\n  - redis.yaml\n")
    (compose / "redis.yaml").write_text("services:\n  redis:\n    image: ${REDIS_IMAGE:-redis}\n")
    env = tmp_path / ".env"
    env.write_text("REDIS_PORT=6379\n")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "redis-password").write_text("s3cret")
    return compose / "compose.yaml", env, secrets


def test_the_fingerprint_moves_with_every_input_compose_reads(tmp_path: Path) -> None:
    compose, env, secrets = _compose_dir(tmp_path)

    def digest(environ: dict[str, str], profiles: tuple[str, ...] = ()) -> str:
        return fingerprint(
            project="p",
            profiles=profiles,
            compose_files=[compose],
            env_files=[env],
            secrets_dir=secrets,
            environ=environ,
        )

    base = digest({"UNRELATED": "1"})
    assert digest({"UNRELATED": "2"}) == base, "a variable no compose file reads changes nothing"
    changed = [
        digest({"REDIS_IMAGE": "redis:8"}),
        digest({"COMPOSE_PROFILES": "x"}),
        digest({}, profiles=("gateway",)),
    ]
    (compose.parent / "redis.yaml").write_text("services:\n  redis:\n    image: redis:7\n")
    changed.append(digest({}))
    env.write_text("REDIS_PORT=6380\n")
    changed.append(digest({}))
    (secrets / "redis-password").write_text("other")
    changed.append(digest({}))
    assert len({base, *changed}) == len(changed) + 1


def test_compose_is_skipped_only_when_every_container_is_the_recorded_healthy_one(
    tmp_path: Path,
) -> None:
    state = UpState("f1", {"redis": ("id1", "redis:7"), "postgres": ("id2", "postgres:16")})
    path = tmp_path / "env" / "up-state.json"
    write_state(path, state)
    assert read_state(path) == state
    rows = {
        "redis": _PsRow("id1", "running", "healthy", "redis:7"),
        "postgres": _PsRow("id2", "running", "none", "postgres:16"),
    }
    assert _unchanged(state, "f1", ["redis", "postgres"], rows)
    assert not _unchanged(state, "f2", ["redis"], rows), "an input changed"
    assert not _unchanged(state, "f1", ["redis", "minio"], rows), "a service never started"
    for row in (
        _PsRow("id9", "running", "healthy", "redis:7"),  # recreated by someone else
        _PsRow("id1", "exited", "none", "redis:7"),
        _PsRow("id1", "running", "starting", "redis:7"),
        _PsRow("id1", "running", "healthy", "5f1a2b3c"),  # the tag names another image now
    ):
        assert not _unchanged(state, "f1", ["redis"], {**rows, "redis": row}), row
    path.write_text("{not json")
    assert read_state(path) is None
