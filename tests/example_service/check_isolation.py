"""What a service repo's tests look like: isolated DB and Redis per worker."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from infra_lib.stack.settings import StackSettings
from infra_lib.testing import (
    IsolatedBucketPrefix,
    IsolatedDatabase,
    IsolatedRedis,
    IsolatedRoom,
)

RECORD = Path(os.environ["EXAMPLE_RECORD_DIR"])


@pytest.mark.parametrize("n", range(4))
def test_database_is_private_to_this_worker(infra_database: IsolatedDatabase, n: int) -> None:
    with psycopg.connect(infra_database.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS items (n int)")
        conn.execute("INSERT INTO items VALUES (%s)", [n])
        count = conn.execute("SELECT count(*) FROM items").fetchone()
    assert count is not None and count[0] >= 1


@pytest.mark.parametrize("n", range(4))
def test_redis_db_is_private_to_this_worker(infra_redis: IsolatedRedis, n: int) -> None:
    client = redis.Redis.from_url(infra_redis.url)
    with client:
        # The session's user, like a service's, reaches keys under its prefix only.
        client.incr(infra_redis.key("counter"))
        assert int(client.get(infra_redis.key("counter")) or 0) >= 1


@pytest.mark.parametrize("n", range(3))
def test_bucket_prefix_is_private_to_this_worker(
    infra_bucket_prefix: IsolatedBucketPrefix, n: int
) -> None:
    client = infra_bucket_prefix.config.client()
    key = infra_bucket_prefix.key(f"object-{n}")
    client.put_object(infra_bucket_prefix.bucket, key, io.BytesIO(b"data"), 4)
    names = [
        o.object_name
        for o in client.list_objects(infra_bucket_prefix.bucket, prefix=infra_bucket_prefix.prefix)
    ]
    assert key in names


def test_livekit_room_exists(infra_livekit_room: IsolatedRoom) -> None:
    from infra_lib.livekit.rooms import RoomService

    with RoomService(infra_livekit_room.config) as rooms:
        assert [r.name for r in rooms.list_rooms([infra_livekit_room.name])] == [
            infra_livekit_room.name
        ]


@pytest.fixture(scope="session", autouse=True)
def _record_what_this_worker_got(
    infra_database: IsolatedDatabase,
    infra_redis: IsolatedRedis,
    infra_bucket_prefix: IsolatedBucketPrefix,
) -> Iterator[None]:
    # Each worker writes what it was given, so the caller can compare them.
    yield
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    record = {
        "database": infra_database.name,
        "role": infra_database.role,
        "redis_db": infra_redis.db,
        "owner": infra_redis.owner,
        "prefix": infra_bucket_prefix.prefix,
    }
    (RECORD / f"{worker}.json").write_text(json.dumps(record))


# -- the fixtures' credentials are refused outside their own resources -----------
# The caller made a database, a Redis key and an object these must not reach.


def test_database_role_is_refused_elsewhere(infra_database: IsolatedDatabase) -> None:
    config = infra_database.config
    elsewhere = config.with_login(config.user, config.password, os.environ["EXAMPLE_FOREIGN_DB"])
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(**elsewhere.connect_kwargs())
    with psycopg.connect(infra_database.url, autocommit=True) as conn:
        for statement in ("CREATE DATABASE sneaky", "CREATE ROLE sneaky"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_redis_user_is_refused_outside_its_prefix(
    infra_redis: IsolatedRedis, infra_settings: StackSettings
) -> None:
    foreign = os.environ["EXAMPLE_FOREIGN_KEY"]
    for db in range(infra_settings.redis_databases):
        with redis.Redis.from_url(infra_redis.config.url(db)) as client:
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.get(foreign)
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.set("unprefixed", "1")
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.flushdb()
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.publish("events", "hello")
            assert client.set(infra_redis.key(f"db{db}"), "1")


def test_storage_user_is_refused_outside_its_prefix(
    infra_bucket_prefix: IsolatedBucketPrefix,
) -> None:
    from minio.error import S3Error

    client = infra_bucket_prefix.config.client()
    bucket = infra_bucket_prefix.bucket
    refused = [
        lambda: client.get_object(bucket, os.environ["EXAMPLE_FOREIGN_OBJECT"]),
        lambda: client.put_object(bucket, "outside/object", io.BytesIO(b"x"), 1),
        lambda: list(client.list_objects(bucket, prefix="")),
        lambda: list(client.list_objects(os.environ["EXAMPLE_FOREIGN_BUCKET"])),
    ]
    for call in refused:
        with pytest.raises(S3Error) as caught:
            call()
        assert caught.value.code == "AccessDenied"
