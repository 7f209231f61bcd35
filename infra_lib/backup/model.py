"""Types shared by every backup target: progress hook, count checks, reports.

Kept free of driver imports so the tasks can type against them cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

__all__ = [
    "TARGETS",
    "CountCheck",
    "DatasetRestore",
    "DrillReport",
    "ProgressCallback",
    "RestoreReport",
    "Target",
]

#: A backup target's name: one of :func:`infra_lib.backup.target.target_names`.
Target = str

#: Every target, in the order ``--target all`` runs them.
#: The stack's own targets, registered by :mod:`infra_lib.backup.target`.
TARGETS: tuple[Target, ...] = ("postgres", "redis", "minio")


class ProgressCallback(Protocol):
    """Hook for long transfers; ``total_bytes`` is ``None`` when unknown in advance.

    ``label`` names what is being moved (``"postgres user_db"``). Calls are
    throttled, and the last call of a transfer carries its final byte count.
    """

    def __call__(self, done_bytes: int, total_bytes: int | None, label: str, /) -> None: ...


@dataclass(frozen=True, slots=True)
class CountCheck:
    """One number recorded at backup time, compared with the restored copy."""

    item: str
    expected: int | None
    actual: int | None
    #: Accepted difference; non-zero only where data may legitimately expire.
    tolerance: int = 0

    @property
    def ok(self) -> bool:
        """Whether the restored number matches (within ``tolerance``)."""
        if self.expected is None or self.actual is None:
            return self.expected == self.actual
        return self.expected - self.tolerance <= self.actual <= self.expected


@dataclass(frozen=True, slots=True)
class DatasetRestore:
    """What happened to one database, Redis DB or bucket during a restore."""

    dataset: str
    into: str
    replaced: bool
    checks: tuple[CountCheck, ...]
    notes: tuple[str, ...] = ()
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        """Whether every count matched."""
        return all(check.ok for check in self.checks)


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """The outcome of restoring one archive."""

    archive: Path
    target: Target
    datasets: tuple[DatasetRestore, ...]
    seconds: float


@dataclass(frozen=True, slots=True)
class DrillReport:
    """The outcome of a restore drill on one archive (also stored as ``verified.json``)."""

    archive: Path
    target: Target
    ok: bool
    checked_at: datetime
    seconds: float
    message: str
    datasets: tuple[DatasetRestore, ...] = field(default=())
