"""The fault ledger and the experiment's argument checks (no Docker needed)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from infra_lib.chaos import FaultLedger, LeftoverFault, run_experiment
from infra_lib.errors import ConfigError


def test_the_ledger_is_private_and_round_trips(tmp_path: Path) -> None:
    ledger = FaultLedger(tmp_path / "chaos" / "active.json")
    fault = LeftoverFault("pause", "redis", "abc123", "infra", "2026-12-04T00:00:00+00:00", 42)
    ledger.record(fault)
    assert stat.S_IMODE(ledger.path.stat().st_mode) == 0o600
    assert ledger.read() == fault
    ledger.clear()
    assert ledger.read() is None


def test_an_unreadable_ledger_names_its_file(tmp_path: Path) -> None:
    path = tmp_path / "active.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=str(path)):
        FaultLedger(path).read()


@pytest.mark.parametrize(
    ("fault", "duration", "message"),
    [
        ("melt", 1.0, "unknown fault 'melt'"),
        ("pause", 0.0, "--duration"),
        ("stop", 1e6, "--duration"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_touched(
    tmp_path: Path, fault: str, duration: float, message: str
) -> None:
    stack: Any = None
    with pytest.raises(ConfigError, match=message):
        run_experiment(stack, FaultLedger(tmp_path / "l.json"), fault, "redis", duration=duration)
