"""Archives on disk: atomic writes, verification, listing, retention. No server needed."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import stat
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from infra_lib.backup.archive import (
    MANIFEST_NAME,
    VERIFIED_NAME,
    ArchiveInfo,
    ArchiveWriter,
    DatasetEntry,
    clean_stale_temp,
    latest,
    list_archives,
    mark_verified,
    prune,
    read_archive,
    verify_archive,
)
from infra_lib.backup.jobs import parse_targets
from infra_lib.backup.minio import BucketScope, _rename_policy
from infra_lib.backup.model import CountCheck, DrillReport, Target
from infra_lib.backup.streams import Command, Throttle, drain, feed_file
from infra_lib.errors import BackupCorrupt, BackupError, ConfigError

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def make_archive(
    dest: Path,
    target: Target = "postgres",
    *,
    now: datetime = T0,
    files: dict[str, bytes] | None = None,
    scope: str = "all",
) -> ArchiveInfo:
    files = files if files is not None else {"001-app.dump": b"PGDMP" + b"x" * 5000}
    with ArchiveWriter(dest, target, now=now) as writer:
        for name, data in files.items():
            with writer.open(name) as handle:
                handle.write(data)
        return writer.commit(
            scope=scope,
            source={"kind": "test"},
            server={"version": "17"},
            datasets=[_dataset(target, tuple(files))],
        )


def _dataset(target: Target, files: tuple[str, ...]) -> DatasetEntry:
    """A dataset whose details pass ``target``'s schema."""
    if target == "redis":
        return DatasetEntry(name="db3", files=files, counts={"keys": 3}, details={"db": 3})
    if target == "minio":
        return DatasetEntry(name="files-bucket", files=files, details={"bucket": "files-bucket"})
    return DatasetEntry(name="app", files=files, counts={"public.t": 3})


def test_archive_is_private_named_by_time_and_lists_every_file(tmp_path: Path) -> None:
    dest = tmp_path / "backups"
    info = make_archive(dest, files={"a.dump": b"hello", "b.sql.gz": gzip.compress(b"x")})

    assert info.path == dest / "20260102T030405Z-postgres"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o700
    for child in info.path.iterdir():
        assert stat.S_IMODE(child.stat().st_mode) == 0o600, child
    manifest = json.loads((info.path / MANIFEST_NAME).read_text())
    assert manifest["format"] == 1
    assert manifest["tool"].startswith("infra-lib ")
    assert manifest["target"] == "postgres"
    assert {f["name"]: f["size"] for f in manifest["files"]} == {"a.dump": 5, "b.sql.gz": 21}
    assert manifest["files"][0]["sha256"] == (
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    )
    assert [p.name for p in dest.iterdir()] == [info.path.name], "no temporary directory left"
    verify_archive(info.path)


def test_an_interrupted_backup_leaves_nothing_that_counts(tmp_path: Path) -> None:
    dest = tmp_path / "b"
    make_archive(dest)
    with pytest.raises(RuntimeError, match="boom"), ArchiveWriter(dest, "postgres") as writer:
        with writer.open("x.dump") as handle:
            handle.write(b"partial")
        raise RuntimeError("boom")
    assert [p.name for p in dest.iterdir()] == ["20260102T030405Z-postgres"]

    # A process killed mid-backup cannot clean up: its .tmp-* directory stays.
    killed = dest / ".tmp-20260102T040000Z-postgres-abc123-x"
    killed.mkdir()
    (killed / "x.dump").write_bytes(b"half")
    assert [a.name for a in list_archives(dest)] == ["20260102T030405Z-postgres"]
    latest_postgres = latest(dest, "postgres")
    assert latest_postgres is not None
    assert latest_postgres.name == "20260102T030405Z-postgres"


def test_stale_temporary_directories_are_removed_only_when_old(tmp_path: Path) -> None:
    old = tmp_path / ".tmp-20260101T000000Z-redis-aaaaaa-1"
    young = tmp_path / ".tmp-20260101T000000Z-redis-bbbbbb-2"
    for path in (old, young):
        path.mkdir()
        (path / "db0.keys.gz").write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))

    assert clean_stale_temp(tmp_path) == [old]
    assert not old.exists()
    assert young.exists()

    # The next backup cleans up on its way in.
    os.utime(young, (two_hours_ago, two_hours_ago))
    make_archive(tmp_path, "redis")
    assert not young.exists()


def test_a_directory_without_manifest_is_not_an_archive(tmp_path: Path) -> None:
    fake = tmp_path / "20260102T030405Z-minio"
    fake.mkdir()
    (fake / "objects.tar.gz").write_bytes(b"x")
    assert list_archives(tmp_path) == []
    assert latest(tmp_path, "minio") is None
    with pytest.raises(BackupCorrupt, match=r"no manifest\.json"):
        verify_archive(fake)


def test_flipped_byte_is_reported_with_file_and_both_checksums(tmp_path: Path) -> None:
    info = make_archive(tmp_path)
    target = info.path / "001-app.dump"
    data = bytearray(target.read_bytes())
    data[100] ^= 0x01
    target.write_bytes(bytes(data))

    with pytest.raises(BackupCorrupt) as caught:
        verify_archive(info.path)
    message = str(caught.value)
    assert "001-app.dump" in message
    assert info.manifest.files[0].sha256 in message
    assert caught.value.path == str(info.path)


def test_truncated_missing_and_extra_files_are_each_named(tmp_path: Path) -> None:
    info = make_archive(tmp_path, files={"a.dump": b"12345678", "b.dump": b"abc"})
    (info.path / "a.dump").write_bytes(b"1234")
    with pytest.raises(BackupCorrupt, match=r"a\.dump is 4 bytes, the manifest says 8"):
        verify_archive(info.path)

    (info.path / "a.dump").write_bytes(b"12345678")
    (info.path / "b.dump").unlink()
    with pytest.raises(BackupCorrupt, match=r"b\.dump is missing \(expected 3 bytes\)"):
        verify_archive(info.path)

    (info.path / "b.dump").write_bytes(b"abc")
    (info.path / "stray.bin").write_bytes(b"?")
    with pytest.raises(BackupCorrupt, match=r"'stray\.bin', which its manifest does not list"):
        verify_archive(info.path)
    (info.path / "stray.bin").unlink()
    verify_archive(info.path)


def test_a_damaged_or_hostile_manifest_is_refused(tmp_path: Path) -> None:
    info = make_archive(tmp_path)
    manifest_path = info.path / MANIFEST_NAME
    original = manifest_path.read_text()

    manifest_path.write_text(original[:-20])
    with pytest.raises(BackupCorrupt, match="not valid JSON"):
        verify_archive(info.path)

    data = json.loads(original)
    data["files"][0]["name"] = "../../etc/passwd"
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(BackupCorrupt, match="not a plain data file name"):
        verify_archive(info.path)

    data = json.loads(original)
    data["format"] = 99
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(BackupError, match="newer infra-lib"):
        read_archive(info.path)


def test_verified_marker_is_allowed_beside_the_manifest(tmp_path: Path) -> None:
    info = make_archive(tmp_path)
    report = DrillReport(info.path, "postgres", True, T0, 1.5, "restored 1 dataset(s)")
    mark_verified(report)
    assert stat.S_IMODE((info.path / VERIFIED_NAME).stat().st_mode) == 0o600
    verify_archive(info.path)
    listed = list_archives(tmp_path)[0]
    assert listed.verified is not None
    assert listed.verified.ok
    assert listed.verified.checked_at == T0


def test_backups_in_the_same_second_get_names_of_their_own(tmp_path: Path) -> None:
    first = make_archive(tmp_path, "redis")
    second = make_archive(tmp_path, "redis")
    third = make_archive(tmp_path, "redis")
    assert [first.name, second.name, third.name] == [
        "20260102T030405Z-redis",
        "20260102T030405Z-redis-2",
        "20260102T030405Z-redis-3",
    ]
    assert [a.name for a in list_archives(tmp_path, "redis")] == [
        first.name,
        second.name,
        third.name,
    ]


def test_prune_keeps_exactly_the_newest_of_one_target_and_scope(tmp_path: Path) -> None:
    for hour in range(5):
        make_archive(tmp_path, "postgres", now=T0 + timedelta(hours=hour))
    make_archive(tmp_path, "redis", now=T0)
    service = make_archive(tmp_path, "postgres", now=T0 - timedelta(days=1), scope="service:a")

    removed = prune(tmp_path, "postgres", 2, scope="all")

    assert len(removed) == 3
    left = [a.created_at.hour for a in list_archives(tmp_path, "postgres") if a.scope == "all"]
    assert left == [6, 7]
    assert service.path.exists(), "another scope's archives are not counted"
    assert list_archives(tmp_path, "redis"), "another target's archives are not touched"
    assert prune(tmp_path, "postgres", 2, scope="all") == []
    with pytest.raises(ConfigError, match="at least 1"):
        prune(tmp_path, "postgres", 0)


def test_latest_can_ask_for_an_archive_holding_a_dataset(tmp_path: Path) -> None:
    older = make_archive(tmp_path, now=T0)
    with ArchiveWriter(tmp_path, "postgres", now=T0 + timedelta(hours=1)) as writer:
        with writer.open("001-other.dump") as handle:
            handle.write(b"PGDMP")
        writer.commit(
            scope="service:other",
            source={},
            server={},
            datasets=[DatasetEntry(name="other", files=("001-other.dump",))],
        )
    found = latest(tmp_path, "postgres", dataset="app")
    assert found is not None
    assert found.path == older.path
    assert latest(tmp_path, "postgres", dataset="nothing") is None


def test_commit_refuses_datasets_naming_unwritten_files(tmp_path: Path) -> None:
    with (
        ArchiveWriter(tmp_path, "minio") as writer,
        pytest.raises(RuntimeError, match="not written"),
    ):
        writer.commit(
            scope="all",
            source={},
            server={},
            datasets=[DatasetEntry(name="b", files=("objects.tar.gz",))],
        )
    assert list(tmp_path.iterdir()) == []


# -- process streaming ------------------------------------------------------


def _python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def test_drain_moves_output_in_chunks_and_reports_progress() -> None:
    size = 5 * (1 << 20) + 123
    received = bytearray()
    calls: list[tuple[int, int | None, str]] = []
    command = Command(_python(f"import sys; sys.stdout.buffer.write(b'z' * {size})"), "writer")
    drain(
        command,
        received.extend,
        progress=Throttle(lambda d, t, label: calls.append((d, t, label)), "x", interval=0),
    )
    assert len(received) == size
    assert calls[-1] == (size, size, "x")


def test_drain_failure_carries_exit_status_and_stderr_tail() -> None:
    command = Command(
        _python(
            "import sys; print('pg_dump: error: connection lost', file=sys.stderr); sys.exit(3)"
        ),
        "pg_dump of database app",
    )
    with pytest.raises(
        BackupError, match=r"pg_dump of database app failed \(exit status 3\).*connection lost"
    ):
        drain(command, lambda chunk: None)


def test_feed_passes_input_and_environment_but_not_in_argv(tmp_path: Path) -> None:
    secret = "pw-" + os.urandom(8).hex()
    digest = hashlib.sha256(secret.encode()).hexdigest()
    command = Command(
        _python(
            "import hashlib, os, sys; data = sys.stdin.buffer.read();"
            "seen = hashlib.sha256(os.environ['SECRETVAR'].encode()).hexdigest();"
            f"sys.exit(0 if len(data) == 3_000_000 and seen == '{digest}' else 1)"
        ),
        "reader",
        env={"SECRETVAR": secret},
    )
    assert secret not in " ".join(command.argv)
    assert secret not in repr(command)
    dump = tmp_path / "dump"
    dump.write_bytes(b"a" * 3_000_000)
    seen: list[tuple[int, int | None]] = []
    feed_file(
        command, dump, progress=Throttle(lambda d, t, _l: seen.append((d, t)), "x", 3_000_000)
    )
    assert seen[-1] == (3_000_000, 3_000_000), "the end of the progress is the whole file"


def test_feed_reports_a_program_that_stops_reading(tmp_path: Path) -> None:
    command = Command(_python("import sys; sys.stdin.buffer.read(10); sys.exit(5)"), "pg_restore")
    dump = tmp_path / "dump"
    dump.write_bytes(b"b" * (20 << 20))
    with pytest.raises(BackupError, match=r"pg_restore failed \(exit status 5\)"):
        feed_file(command, dump)


# -- small pieces -----------------------------------------------------------


def test_count_check_tolerance_allows_only_fewer() -> None:
    assert CountCheck("keys", 10, 10).ok
    assert not CountCheck("keys", 10, 9).ok
    assert CountCheck("keys", 10, 8, tolerance=2).ok
    assert not CountCheck("keys", 10, 11, tolerance=2).ok
    assert CountCheck("sequence s", None, None).ok
    assert not CountCheck("sequence s", 5, None).ok


def test_targets_parse() -> None:
    assert parse_targets("all") == ["postgres", "redis", "minio"]
    assert parse_targets("redis") == ["redis"]
    with pytest.raises(ConfigError, match="unknown --target"):
        parse_targets("mysql")


def test_bucket_scope_names_and_coverage() -> None:
    whole = BucketScope("files")
    part = BucketScope("files", ("boards/", "video/"))
    assert whole.name == "files"
    assert part.name == "files:boards/,video/"
    assert whole.covers("anything")
    assert part.covers("video/r1/a.webm")
    assert not part.covers("profiles/u1/avatar.jpg")


def test_policy_moves_to_the_new_bucket_without_touching_lookalikes() -> None:
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": ["*"]},
                    "Action": ["s3:GetObject"],
                    "Resource": ["arn:aws:s3:::files/public/*", "arn:aws:s3:::files-old/*"],
                },
                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::files"},
            ],
        }
    )
    moved = json.loads(_rename_policy(policy, "files", "restored"))
    assert moved["Statement"][0]["Resource"] == [
        "arn:aws:s3:::restored/public/*",
        "arn:aws:s3:::files-old/*",
    ]
    assert moved["Statement"][1]["Resource"] == "arn:aws:s3:::restored"


# -- untrusted manifests ------------------------------------------------------


def _tamper(info: ArchiveInfo, change: Any) -> None:
    path = info.path / MANIFEST_NAME
    data = json.loads(path.read_bytes())
    change(data)
    path.write_text(json.dumps(data))


def _pg_details(**overrides: Any) -> dict[str, Any]:
    details: dict[str, Any] = {
        "owner": "app_user",
        "encoding": "UTF8",
        "collate": "en_US.utf8",
        "ctype": "en_US.utf8",
        "locale_provider": "c",
        "locale": None,
        "connection_limit": -1,
        "comment": None,
        "acl": [{"grantee": "PUBLIC", "privilege": "CONNECT", "grantable": False}],
        "sequences": {"public.t_id_seq": 3},
        "large_objects": 0,
        "roles": ["app_user"],
    }
    return {**details, **overrides}


def test_details_a_backup_writes_pass(tmp_path: Path) -> None:
    info = make_archive(tmp_path)
    _tamper(info, lambda d: d["datasets"][0].__setitem__("details", _pg_details()))
    assert read_archive(info.path).manifest.datasets[0].details["owner"] == "app_user"
    for target in ("redis", "minio"):
        read_archive(make_archive(tmp_path / target, target).path)


@pytest.mark.parametrize(
    ("details", "field"),
    [
        (
            _pg_details(acl=[{"grantee": "x", "privilege": "ALL; DROP", "grantable": False}]),
            "acl.0.privilege",
        ),
        (
            _pg_details(acl=[{"grantee": "a\x00b", "privilege": "CONNECT", "grantable": False}]),
            "acl.0.grantee",
        ),
        (_pg_details(owner="o" * 64), "owner"),
        (_pg_details(roles=["pg_write_server_files"]), "roles.0"),
        (_pg_details(locale_provider="x"), "locale_provider"),
        (_pg_details(collate="C' ; SELECT 1; --"), "collate"),
        (_pg_details(large_objects=True), "large_objects"),
        (_pg_details(extra=1), "extra"),
    ],
)
def test_a_tampered_postgres_detail_is_named(
    tmp_path: Path, details: dict[str, Any], field: str
) -> None:
    info = make_archive(tmp_path)
    _tamper(info, lambda d: d["datasets"][0].__setitem__("details", details))
    with pytest.raises(BackupCorrupt, match=re.escape(f"datasets.0.details.{field}")):
        read_archive(info.path)
    assert list_archives(tmp_path) == []  # an invalid manifest is no archive to pick


@pytest.mark.parametrize(
    ("target", "change", "message"),
    [
        ("redis", lambda ds: ds["details"].update(db=0), "does not match its details.db 0"),
        ("redis", lambda ds: ds["details"].update(db="3"), "valid integer"),
        ("redis", lambda ds: ds.update(name="db99999", details={"db": 99999}), "less than"),
        ("minio", lambda ds: ds["details"].update(bucket="a/../b"), "invalid bucket name"),
        ("minio", lambda ds: ds["details"].update(prefixes=["../"]), "prefixes.0"),
        ("postgres", lambda ds: ds.update(files=["../../etc/passwd"]), "plain data file name"),
        ("postgres", lambda ds: ds.update(files=[]), "at least 1 item"),
        ("postgres", lambda ds: ds["counts"].update({"public.t": -1}), "greater than or equal"),
    ],
)
def test_a_tampered_dataset_is_refused(
    tmp_path: Path, target: Target, change: Any, message: str
) -> None:
    info = make_archive(tmp_path, target)
    _tamper(info, lambda d: change(d["datasets"][0]))
    with pytest.raises(BackupCorrupt, match=message):
        read_archive(info.path)


def test_json_that_parsers_read_differently_is_refused(tmp_path: Path) -> None:
    info = make_archive(tmp_path)
    path = info.path / MANIFEST_NAME
    raw = path.read_text()
    path.write_text(raw.replace('"scope": "all"', '"scope": "all", "scope": "service:x"', 1))
    with pytest.raises(BackupCorrupt, match="appears twice"):
        read_archive(info.path)
    path.write_text(raw.replace('"size": ', '"size": NaN, "x": ', 1))
    with pytest.raises(BackupCorrupt, match="NaN is not a JSON number"):
        read_archive(info.path)


def test_a_symlinked_manifest_is_refused(tmp_path: Path) -> None:
    info = make_archive(tmp_path / "a")
    elsewhere = tmp_path / "elsewhere.json"
    (info.path / MANIFEST_NAME).rename(elsewhere)
    (info.path / MANIFEST_NAME).symlink_to(elsewhere)
    with pytest.raises(BackupCorrupt, match="symbolic link"):
        read_archive(info.path)


def test_a_scope_that_is_not_a_service_is_refused(tmp_path: Path) -> None:
    info = make_archive(tmp_path)
    _tamper(info, lambda d: d.update(scope="[link=https://x.example]all[/link]\x1b[2J"))
    with pytest.raises(BackupCorrupt, match=r"scope: Value error, .* is neither 'all'"):
        read_archive(info.path)
