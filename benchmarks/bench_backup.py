"""Backup and restore of a 1 GB database: our path against raw pg_dump / pg_restore.

Both sides run the same tools in the postgres container through the same
``docker compose ... exec -T postgres`` argument list with the same flags;
the raw side writes straight to a file (and reads straight from it), ours
streams through Python, hashing every chunk, counting rows in the dump's
snapshot and verifying the archive before restoring. Targets: ours at
least 0.9x the raw throughput, and flat Python memory while dumping (the
exit status checks the memory only: timings on shared runners are noisy).

Runs against the stack of this checkout (.env); the database it generates
(``bench_backup_<tag>``) and everything else it creates are dropped at the end.

    python benchmarks/bench_backup.py [--gigabytes 1.0] [--rounds 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg
from psycopg import sql

from infra_lib.backup.postgres import (
    DEFAULT_COMPRESSION,
    ContainerPgTools,
    PostgresSource,
    backup_postgres,
    restore_postgres,
)
from infra_lib.stack.compose import Stack, StackPaths
from infra_lib.stack.settings import load_stack_settings

#: Python memory a backup may grow by, whatever the size of the database.
MEMORY_LIMIT = 32 << 20
#: Bytes of table data per generated row, roughly (heap tuple included).
ROW_BYTES = 230


def rss_bytes() -> int:
    with Path("/proc/self/statm").open() as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssSampler:
    """Highest resident set size seen while running, sampled every 20 ms."""

    def __init__(self) -> None:
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def generate(source: PostgresSource, db: str, gigabytes: float) -> tuple[float, int]:
    """Fill ``db`` with two wide tables, one per core; returns (seconds, bytes)."""
    rows = int(gigabytes * 1e9 / ROW_BYTES)
    per_table = rows // 2

    def fill(table: str, seed: int) -> None:
        with psycopg.connect(**source.config.connect_kwargs(autocommit=True, dbname=db)) as conn:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (id bigint PRIMARY KEY, created timestamptz, owner int, "
                    "amount numeric(12,2), title text, body text)"
                ).format(sql.Identifier(table))
            )
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} SELECT g, now() - g * interval '1 second', g %% 9973, "
                    "(g %% 100000) / 7.0, md5((g * {})::text), "
                    "md5(random()::text) || md5(random()::text) || md5(random()::text) || "
                    "md5(random()::text) || ' ' || md5(g::text) "
                    "FROM generate_series(1, %s) g"
                ).format(sql.Identifier(table), sql.Literal(seed)),
                [per_table],
            )

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(fill, ["events_a", "events_b"], [7, 13]))
    seconds = time.perf_counter() - start
    with psycopg.connect(**source.config.connect_kwargs(autocommit=True, dbname=db)) as conn:
        conn.execute("VACUUM ANALYZE")
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return seconds, int(row[0]) if row else 0


def raw_dump(tools: ContainerPgTools, db: str, out: Path) -> int:
    command = tools.command(
        "pg_dump",
        ["--format=custom", f"--compress={DEFAULT_COMPRESSION}", "--no-password"],
        what="raw pg_dump",
        database=db,
    )
    with out.open("wb") as handle:
        subprocess.run(command.argv, stdout=handle, stdin=subprocess.DEVNULL, check=True)
    return out.stat().st_size


def raw_restore(tools: ContainerPgTools, db: str, dump: Path) -> None:
    command = tools.command(
        "pg_restore", ["--exit-on-error", "--no-password", f"--dbname={db}"], what="raw pg_restore"
    )
    with dump.open("rb") as handle:
        subprocess.run(command.argv, stdin=handle, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    settings = load_stack_settings(ROOT / ".env", environ=os.environ)
    stack = Stack(settings, StackPaths.for_root(ROOT))
    source = PostgresSource.from_stack(stack)
    tools = ContainerPgTools.from_stack(stack)
    tag = uuid.uuid4().hex[:6]
    db = f"bench_backup_{tag}"
    made = [db]

    def admin_execute(statement: sql.Composable) -> None:
        with psycopg.connect(**source.config.connect_kwargs(autocommit=True)) as conn:
            conn.execute(statement)

    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    try:
        admin_execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        gen_s, size = generate(source, db, args.gigabytes)
        print(f"generate db={db} bytes={size} seconds={gen_s:.1f} MB/s={size / gen_s / 1e6:.0f}")

        raw_times, our_times = [], []
        raw_file = work / "raw.dump"
        archive = None
        # Alternate the two so that cache state and background noise hit both alike.
        for n in range(args.rounds):
            raw_file.unlink(missing_ok=True)
            seconds, raw_size = timed(lambda: raw_dump(tools, db, raw_file))
            raw_times.append(seconds)
            print(f"dump round={n} raw seconds={seconds:.2f} bytes={raw_size}")
            if archive is not None:
                shutil.rmtree(archive.parent)
            seconds, info = timed(
                lambda n=n: backup_postgres(source, work / f"ours-{n}", databases=[db])
            )
            our_times.append(seconds)
            archive = info.path
            print(f"dump round={n} ours seconds={seconds:.2f} bytes={info.size}")
        assert archive is not None
        raw_s, our_s = min(raw_times), min(our_times)
        print(
            f"dump raw best_s={raw_s:.2f} MB/s={size / raw_s / 1e6:.0f} | "
            f"ours best_s={our_s:.2f} MB/s={size / our_s / 1e6:.0f} | "
            f"ratio ours/raw throughput={raw_s / our_s:.2f} "
            f"(target >= 0.9: {'met' if raw_s / our_s >= 0.9 else 'NOT met'}) | "
            f"median raw={statistics.median(raw_times):.2f} ours={statistics.median(our_times):.2f}"
        )

        # A separate run for memory: tracing allocations slows Python down a little.
        rss_before = rss_bytes()
        tracemalloc.start()
        with RssSampler() as sampler:
            seconds, _ = timed(lambda: backup_postgres(source, work / "mem", databases=[db]))
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        shutil.rmtree(work / "mem")
        print(
            f"memory python_peak_traced_MB={traced_peak / 1e6:.1f} "
            f"rss_growth_MB={(sampler.peak - rss_before) / 1e6:.1f} "
            f"(database {size / 1e6:.0f} MB, dump {info.size / 1e6:.0f} MB, "
            f"traced run {seconds:.2f} s)"
        )

        raw_restore_times, our_restore_times = [], []

        def raw_round(n: int) -> None:
            target = f"bench_backup_{tag}_raw{n}"
            made.append(target)

            def create_and_restore() -> None:
                # Ours creates its database too, so the raw side pays for that as well.
                admin_execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
                raw_restore(tools, target, raw_file)

            admin_execute(sql.SQL("CHECKPOINT"))
            seconds, _ = timed(create_and_restore)
            raw_restore_times.append(seconds)
            print(f"restore round={n} raw seconds={seconds:.2f}")
            admin_execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(target)))

        def our_round(n: int) -> None:
            target = f"bench_backup_{tag}_ours{n}"
            made.append(target)
            admin_execute(sql.SQL("CHECKPOINT"))
            seconds, report = timed(lambda: restore_postgres(source, archive, into=target))
            our_restore_times.append(seconds)
            checks = sum(len(d.checks) for d in report.datasets)
            print(f"restore round={n} ours seconds={seconds:.2f} counts_checked={checks}")
            admin_execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(target)))

        # A restore leaves a gigabyte of dirty pages for the checkpointer: each
        # side starts after a CHECKPOINT, and the order alternates, so neither
        # pays for the other's writes.
        for n in range(args.rounds):
            for one in (raw_round, our_round) if n % 2 == 0 else (our_round, raw_round):
                one(n)
        raw_r, our_r = min(raw_restore_times), min(our_restore_times)
        print(
            f"restore raw best_s={raw_r:.2f} | ours best_s={our_r:.2f} (verify + restore + "
            f"recount) | ratio ours/raw throughput={raw_r / our_r:.2f} "
            f"(target >= 0.9: {'met' if raw_r / our_r >= 0.9 else 'NOT met'}) | "
            f"median raw={statistics.median(raw_restore_times):.2f} "
            f"ours={statistics.median(our_restore_times):.2f}"
        )
        # Timings on a shared runner are noisy, so only flat memory decides the
        # exit status; the ratios are printed for people to compare.
        return 0 if max(traced_peak, sampler.peak - rss_before) < MEMORY_LIMIT else 1
    finally:
        for name in made:
            admin_execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        shutil.rmtree(work, ignore_errors=True)
        print(f"cleanup dropped {', '.join(made)} and {work}")


if __name__ == "__main__":
    raise SystemExit(main())
