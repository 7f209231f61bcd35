"""What a service repo's tests look like: isolated DB and Redis per worker."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from infra_lib.testing import IsolatedDatabase, IsolatedRedis

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


@pytest.fixture(scope="session", autouse=True)
def _record_what_this_worker_got(
    infra_database: IsolatedDatabase, infra_redis: IsolatedRedis
) -> Iterator[None]:
    # Each worker writes what it was given, so the caller can compare them.
    yield
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    record = {
        "database": infra_database.name,
        "role": infra_database.role,
        "redis_db": infra_redis.db,
        "owner": infra_redis.owner,
    }
    (RECORD / f"{worker}.json").write_text(json.dumps(record))
