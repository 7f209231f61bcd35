"""A snapshot (server-side template copy) against the raw pg_dump / pg_restore of the same data.

The development loop's "save, break, go back": `inv snapshot save` and
`inv snapshot restore` copy a database inside the server; the baseline is
the raw tools a backup uses (custom-format pg_dump to a file, pg_restore
into a new database), run the same way bench_backup.py runs them. Ratio =
raw seconds / snapshot seconds (above 1: the snapshot is faster).

Runs against the stack of this checkout (.env); the generated database
(``bench_snap_<tag>``), its snapshot and the raw restore are dropped at the end.

    python benchmarks/bench_snapshot.py [--gigabytes 0.2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg
from psycopg import sql

from benchmarks.bench_backup import generate, raw_dump, raw_restore, timed
from infra_lib.backup.postgres import ContainerPgTools, PostgresSource
from infra_lib.postgres.snapshots import Snapshots, SnapshotTarget
from infra_lib.stack.compose import Stack, StackPaths
from infra_lib.stack.settings import load_stack_settings


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=0.2)
    args = parser.parse_args()
    settings = load_stack_settings(ROOT / ".env", environ=os.environ)
    stack = Stack(settings, StackPaths.for_root(ROOT))
    source = PostgresSource.from_stack(stack)
    tools = ContainerPgTools.from_stack(stack)
    snapshots = Snapshots(source.config)
    tag = uuid.uuid4().hex[:6]
    db, restored, name = f"bench_snap_{tag}", f"bench_snap_{tag}_raw", f"bench-{tag}"

    def admin(statement: sql.Composable) -> None:
        with psycopg.connect(**source.config.connect_kwargs(autocommit=True)) as conn:
            conn.execute(statement)

    owner = source.config.user
    with tempfile.TemporaryDirectory(prefix="bench-snapshot-") as work:
        dump = Path(work) / "raw.dump"
        try:
            admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
            _, size = generate(source, db, args.gigabytes)
            raw_save, _ = timed(lambda: raw_dump(tools, db, dump))
            snap_save, _ = timed(lambda: snapshots.save(name, [SnapshotTarget("bench", db, owner)]))

            def raw_back() -> None:
                admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(restored)))
                raw_restore(tools, restored, dump)

            raw_load, _ = timed(raw_back)
            snap_load, _ = timed(lambda: snapshots.restore(name))
        finally:
            if snapshots.find(name):
                snapshots.remove(name)
            for database in (db, restored):
                admin(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(database)))
    print(f"database {size / 1e6:.0f} MB")
    print(
        f"save: raw_pg_dump_s={raw_save:.2f} snapshot_s={snap_save:.2f} "
        f"ratio={raw_save / snap_save:.1f}"
    )
    print(
        f"restore: raw_pg_restore_s={raw_load:.2f} snapshot_s={snap_load:.2f} "
        f"ratio={raw_load / snap_load:.1f}"
    )
    print("(ratio = raw seconds / snapshot seconds; a snapshot is local and no backup)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
