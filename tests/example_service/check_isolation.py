"""What a service repo's tests look like: isolated DB and Redis per worker."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

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
        client.incr("counter")
        assert int(client.get("counter") or 0) >= 1


@pytest.mark.parametrize("n", range(3))
def test_bucket_prefix_is_private_to_this_worker(
    infra_bucket_prefix: IsolatedBucketPrefix, n: int
) -> None:
    import io

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
