"""A session that records what it got, then waits: the caller kills it or lets it end.

Run by tests/integration/test_pytest_plugin.py. ``EXAMPLE_SESSION`` names the
record file; the session waits until ``<name>.release`` appears in
``EXAMPLE_RECORD_DIR`` (or gives up after two minutes).
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import psycopg
import redis

from infra_lib.testing import IsolatedBucketPrefix, IsolatedDatabase, IsolatedRedis

RECORD = Path(os.environ["EXAMPLE_RECORD_DIR"])
NAME = os.environ["EXAMPLE_SESSION"]


def test_hold_resources_until_released(
    infra_database: IsolatedDatabase,
    infra_redis: IsolatedRedis,
    infra_bucket_prefix: IsolatedBucketPrefix,
) -> None:
    with psycopg.connect(infra_database.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE held (n int)")
    with redis.Redis.from_url(infra_redis.url) as client:
        client.set(infra_redis.key("held"), "1")
    storage = infra_bucket_prefix.config.client()
    storage.put_object(
        infra_bucket_prefix.bucket, infra_bucket_prefix.key("held"), io.BytesIO(b"1"), 1
    )
    record = {
        "pid": os.getpid(),
        "database": infra_database.name,
        "role": infra_database.role,
        "owner": infra_redis.owner,
        "redis_db": infra_redis.db,
        "redis_key": infra_redis.key("held"),
        "object": infra_bucket_prefix.key("held"),
    }
    # Written last and renamed into place: the caller sees it whole, resources made.
    partial = RECORD / f"{NAME}.json.part"
    partial.write_text(json.dumps(record))
    partial.rename(RECORD / f"{NAME}.json")
    deadline = time.monotonic() + 120
    while not (RECORD / f"{NAME}.release").exists():
        assert time.monotonic() < deadline, "never released"
        time.sleep(0.1)
