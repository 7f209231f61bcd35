"""Type-checked (never run) use of the public API: mypy --strict guards it.

If a public signature changes in a way that breaks callers, `nox -s typecheck`
fails here first.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import infra_lib
from infra_lib.livekit import RoomService, TokenFactory
from infra_lib.storage import Presigner, avatar_key


def service_startup(env_file: Path) -> str:
    settings: infra_lib.ServiceSettings = infra_lib.ServiceSettings.load(env_file)
    with settings.postgres() as conn:
        conn.execute("SELECT 1")
    settings.redis().ping()
    url: str = settings.presigner().put_url(
        settings.bucket, avatar_key("42"), content_type="image/jpeg", expires=timedelta(minutes=5)
    )
    return url


def operator(root: Path) -> list[str]:
    stack_settings = infra_lib.load_stack_settings(root / ".env", environ={})
    stack = infra_lib.Stack(stack_settings, infra_lib.StackPaths.for_root(root))
    report = infra_lib.provision(
        infra_lib.load_manifest(root / "infra.toml"),
        env_dir=root / "env" / stack.project_name,
        postgres=infra_lib.PostgresConfig.from_stack(stack_settings),
        redis=infra_lib.RedisConfig.from_stack(stack_settings),
        storage=infra_lib.S3Config.from_stack(stack_settings),
        livekit=infra_lib.LiveKitConfig.from_stack(stack_settings),
        dry_run=True,
    )
    return [row.name for row in report.rows if row.change != "unchanged"]


def video(config: infra_lib.LiveKitConfig, s3: infra_lib.S3Config) -> str:
    token = TokenFactory(config).join_token("room", "alice", ttl=timedelta(minutes=10))
    with RoomService(config) as rooms:
        rooms.create_room("room", max_participants=4)
    return token.token + Presigner(s3).get_url("bucket", "key", expires=timedelta(minutes=1))


def errors() -> int:
    try:
        operator(Path())
    except infra_lib.InfraError as exc:
        return exc.exit_code
    return 0


def metrics(settings: infra_lib.StackSettings) -> list[str]:
    store = infra_lib.MetricsStore.from_stack(settings)
    endpoint = infra_lib.MetricsEndpoint(port=8000, path="/metrics")
    down = [t.job for t in store.targets() if not t.up]
    value: float | None = store.value("sum(up)")
    return [*down, endpoint.path, str(value)]
