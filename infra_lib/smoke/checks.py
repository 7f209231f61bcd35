"""The smoke checks: each proves one service can use one component, for real.

Every check uses the credentials the service itself gets (its env file), so
a passing run means the services' settings work, not just the admin's.
Temporary keys, rows, objects and rooms are removed in ``finally`` blocks.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from infra_lib.manifest import Manifest, ServiceManifest
from infra_lib.provisioning import read_service_env
from infra_lib.smoke.runner import Check, Component
from infra_lib.stack.settings import StackSettings

if TYPE_CHECKING:
    import redis

__all__ = ["SmokeTarget", "build_checks"]

#: Per-operation network timeout of a check, in seconds: a dead server should
#: fail its checks fast, not hang the run.
TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class SmokeTarget:
    """Where the stack is and where the services' env files are."""

    settings: StackSettings
    manifest: Manifest
    env_dir: Path


def _tag() -> str:
    return f"smoke-{uuid.uuid4().hex[:10]}"


def _postgres(target: SmokeTarget, service: str) -> Callable[[], str]:
    def check() -> str:
        import psycopg

        env = read_service_env(target.env_dir, service).values
        with psycopg.connect(env["DATABASE_URL"], connect_timeout=int(TIMEOUT)) as conn:
            # Everything happens in a transaction that is rolled back: no residue.
            with conn.transaction(force_rollback=True):
                conn.execute("CREATE TEMP TABLE smoke_probe (id int PRIMARY KEY, body text)")
                conn.execute("INSERT INTO smoke_probe VALUES (1, 'written')")
                row = conn.execute("SELECT body FROM smoke_probe WHERE id = 1").fetchone()
            if row != ("written",):
                raise AssertionError(f"read back {row!r}, expected ('written',)")
            user = conn.execute("SELECT current_user").fetchone()
        return f"login as {user[0] if user else '?'}, write, read, rollback"

    return check


def _redis_client(env: dict[str, str]) -> redis.Redis:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from infra_lib.service import ServiceSettings

    # As the service itself would connect (its CA file included), but failing fast.
    return ServiceSettings(env).redis(
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def _key_prefix(env: dict[str, str]) -> str:
    # Env files written before prefixes existed have none; their users reach every key.
    return env.get("REDIS_KEY_PREFIX", "")


def _redis_kv(target: SmokeTarget, service: str) -> Callable[[], str]:
    def check() -> str:
        env = read_service_env(target.env_dir, service).values
        client = _redis_client(env)
        # The service's ACL user may touch keys under its prefix only.
        key = f"{_key_prefix(env)}{_tag()}"
        try:
            client.set(key, "v", ex=30)
            value, ttl = client.get(key), client.ttl(key)
            if value != "v" or not 0 < int(ttl) <= 30:
                raise AssertionError(f"GET gave {value!r}, TTL {ttl!r}")
        finally:
            client.delete(key)
            client.close()
        return f"SET/GET/TTL under {_key_prefix(env)!r} on db {env.get('REDIS_DB', '?')}"

    return check


def _redis_pubsub(target: SmokeTarget, service: str) -> Callable[[], str]:
    def check() -> str:
        env = read_service_env(target.env_dir, service).values
        subscriber = _redis_client(env)
        publisher = _redis_client(env)
        channel = f"{_key_prefix(env)}{_tag()}:broadcast"
        # Any: redis-py typed pubsub() only in later releases; this reads the same on both.
        pubsub: Any = cast("Any", subscriber).pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(channel)
            pubsub.get_message(timeout=TIMEOUT)  # the subscribe confirmation
            receivers = publisher.publish(channel, "hello")
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                message = pubsub.get_message(timeout=0.2)
                if message is not None:
                    if message["data"] != "hello":
                        raise AssertionError(f"received {message['data']!r}")
                    return f"published to {receivers} subscriber(s), received"
            raise AssertionError(f"no message on {channel} within {TIMEOUT:.0f}s")
        finally:
            pubsub.close()
            subscriber.close()
            publisher.close()

    return check


def _coturn(target: SmokeTarget) -> Callable[[], str]:
    def check() -> str:
        from infra_lib.stack.probes import stun_binding

        s = target.settings
        addr, port = stun_binding(s.infra_public_host, s.turn_port, timeout=TIMEOUT)
        return f"STUN binding from {s.infra_public_host}:{s.turn_port} mapped {addr}:{port}"

    return check


def _storage(target: SmokeTarget, service: str) -> Callable[[], str]:
    def check() -> str:
        import urllib.request
        from datetime import timedelta

        from infra_lib.storage.config import S3Config
        from infra_lib.storage.presign import Presigner

        env = read_service_env(target.env_dir, service).values
        config = S3Config(
            endpoint=env["S3_ENDPOINT"],
            public_endpoint=env.get("S3_PUBLIC_ENDPOINT", ""),
            access_key=env["S3_ACCESS_KEY_ID"],
            secret_key=env["S3_SECRET_ACCESS_KEY"],
            region=env.get("S3_REGION", "us-east-1"),
            timeout=TIMEOUT,
        )
        bucket = env["S3_BUCKET"]
        key = f"{env['S3_PREFIXES'].split(',')[0]}{_tag()}/probe.txt"
        body = f"smoke {service}".encode()
        presigner = Presigner(config)
        # The browser's path: the backend presigns, a plain HTTP client uploads.
        put = urllib.request.Request(  # noqa: S310 - URL built from our own settings
            presigner.put_url(bucket, key, content_type="text/plain", expires=timedelta(minutes=2)),
            data=body,
            method="PUT",
            headers={"Content-Type": "text/plain"},
        )
        try:
            with urllib.request.urlopen(put, timeout=TIMEOUT):  # noqa: S310
                pass
            get_url = presigner.get_url(bucket, key, expires=timedelta(minutes=2))
            with urllib.request.urlopen(get_url, timeout=TIMEOUT) as response:  # noqa: S310
                got, kind = response.read(), response.headers.get("Content-Type")
            if got != body or kind != "text/plain":
                raise AssertionError(f"downloaded {got!r} as {kind!r}")
        finally:
            config.client().remove_object(bucket, key)
        return f"presigned PUT and GET of {bucket}/{key.rsplit('/', 2)[0]}/..."

    return check


def _livekit(target: SmokeTarget, service: str) -> Callable[[], str]:
    def check() -> str:
        from datetime import timedelta

        from infra_lib.livekit.config import LiveKitConfig
        from infra_lib.livekit.rooms import RoomService
        from infra_lib.livekit.tokens import TokenFactory

        env = read_service_env(target.env_dir, service).values
        config = LiveKitConfig(
            url=env["LIVEKIT_URL"],
            api_key=env["LIVEKIT_API_KEY"],
            api_secret=env["LIVEKIT_API_SECRET"],
            timeout=TIMEOUT,
        )
        room = _tag()
        with RoomService(config) as rooms:
            try:
                rooms.create_room(room, empty_timeout=timedelta(seconds=30), max_participants=2)
                token = TokenFactory(config).join_token(room, f"{service}-smoke")
                if room not in {r.name for r in rooms.list_rooms([room])}:
                    raise AssertionError(f"room {room} not listed after create")
            finally:
                rooms.delete_room(room)
        return f"room create/list/delete, join token for {token.identity}"

    return check


def build_checks(
    target: SmokeTarget,
    *,
    components: Collection[Component],
    services: Collection[str] | None = None,
) -> list[Check]:
    """The checks for ``components`` and the manifest's services (or some of them)."""
    chosen: list[ServiceManifest] = [
        s for s in target.manifest if services is None or s.name in services
    ]
    checks: list[Check] = []
    for service in chosen:
        if "postgres" in components and service.postgres is not None:
            checks.append(
                Check("postgres", "postgres", service.name, _postgres(target, service.name))
            )
        if "redis" in components and service.redis is not None:
            checks.append(Check("redis kv", "redis", service.name, _redis_kv(target, service.name)))
            checks.append(
                Check("redis pubsub", "redis", service.name, _redis_pubsub(target, service.name))
            )
    extra = _extra_checks(target, components, chosen)
    checks.extend(extra)
    if "coturn" in components:
        checks.append(Check("stun binding", "coturn", "(stack)", _coturn(target)))
    if "observability" in components:
        checks.append(
            Check("metrics targets up", "observability", "(stack)", _observability(target))
        )
        checks.append(
            Check("container log found", "observability", "(stack)", _log_round_trip(target))
        )
        checks.append(
            Check("otlp span round trip", "observability", "(stack)", _span_round_trip(target))
        )
    return checks


# The pipeline batches for 1 s and the stores make data searchable within a
# few seconds; 30 s leaves room on a loaded CI machine.
PIPELINE_TIMEOUT = 30.0


def _log_round_trip(target: SmokeTarget) -> Callable[[], str]:
    def check() -> str:
        from infra_lib.observability.pipeline import container_log_round_trip

        return container_log_round_trip(target.settings, timeout=PIPELINE_TIMEOUT)

    return check


def _span_round_trip(target: SmokeTarget) -> Callable[[], str]:
    def check() -> str:
        from infra_lib.observability.pipeline import span_round_trip

        return span_round_trip(target.settings, timeout=PIPELINE_TIMEOUT)

    return check


def _observability(target: SmokeTarget) -> Callable[[], str]:
    def check() -> str:
        from infra_lib.observability.report import check_targets
        from infra_lib.observability.store import MetricsStore

        store = MetricsStore.from_stack(target.settings)
        store.timeout = TIMEOUT
        result = check_targets(store)
        if not result.ok:
            raise AssertionError(f"down: {result.failure()}")
        return result.summary()

    return check


def _extra_checks(
    target: SmokeTarget, components: Collection[Component], chosen: list[ServiceManifest]
) -> list[Check]:
    checks: list[Check] = []
    for service in chosen:
        if "storage" in components and service.storage is not None and service.storage.prefixes:
            checks.append(
                Check("presigned upload", "storage", service.name, _storage(target, service.name))
            )
        if "livekit" in components and service.livekit is not None:
            checks.append(
                Check("livekit room", "livekit", service.name, _livekit(target, service.name))
            )
    return checks
