"""`inv backup`, `inv backups` and `inv restore` as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import run_inv

pytestmark = pytest.mark.integration


def test_backup_verify_list_and_refused_restore(tmp_path: Path) -> None:
    made = run_inv("backup", "--target", "redis", "--to", str(tmp_path), "--verify", "--quiet")
    assert made.returncode == 0, made.stdout + made.stderr
    archive = Path(made.stdout.strip().splitlines()[-1])
    assert archive.parent == tmp_path
    assert (archive / "manifest.json").stat().st_mode & 0o777 == 0o600

    listed = run_inv("backups", "--dir", str(tmp_path))
    assert listed.returncode == 0, listed.stderr
    assert archive.name in listed.stdout
    assert "yes" in listed.stdout  # the drill passed and was recorded

    refused = run_inv("restore", "--target", "redis", "--from", str(archive))
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "--force" in refused.stderr


def test_restore_of_a_damaged_archive_is_refused_before_anything(tmp_path: Path) -> None:
    made = run_inv("backup", "--target", "redis", "--to", str(tmp_path), "--quiet")
    assert made.returncode == 0, made.stderr
    archive = Path(made.stdout.strip().splitlines()[-1])
    data = next(p for p in archive.iterdir() if p.name != "manifest.json")
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    result = run_inv("restore", "--target", "redis", "--from", str(archive), "--force")
    assert result.returncode != 0
    assert "sha256" in result.stderr or "checksum" in result.stderr
