"""Run smoke checks concurrently, time them, and report them (table, JUnit XML).

A check is a plain function that raises on failure and cleans up after
itself in ``finally`` blocks, so a failing check leaves no residue either.
Checks run in a thread pool: they wait on the network, and the whole run
should take seconds.
"""

from __future__ import annotations

import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["COMPONENTS", "Check", "CheckResult", "SmokeReport", "run_checks"]

logger = logging.getLogger(__name__)

Component = Literal["postgres", "redis", "storage", "livekit", "coturn", "observability"]
#: Checked by default; ``observability`` is added when that layer is on.
COMPONENTS: tuple[Component, ...] = ("postgres", "redis", "storage", "livekit", "coturn")


@dataclass(frozen=True, slots=True)
class Check:
    """One named check of one component, for one service (or the stack)."""

    name: str
    component: Component
    service: str
    run: Callable[[], str] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of a check: ``detail`` on success, ``cause`` on failure."""

    name: str
    component: Component
    service: str
    ok: bool
    seconds: float
    detail: str = ""
    cause: str = ""


@dataclass(frozen=True, slots=True)
class SmokeReport:
    """Every result of one smoke run, in the order the checks were given."""

    results: tuple[CheckResult, ...]
    seconds: float
    skipped_components: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every check passed (and at least one ran)."""
        return bool(self.results) and all(r.ok for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        """The failed checks."""
        return [r for r in self.results if not r.ok]

    def write_junit(self, path: Path) -> None:
        """Write the results as a JUnit XML file CI systems understand."""
        suite = ET.Element(
            "testsuite",
            name="infra-smoke",
            tests=str(len(self.results)),
            failures=str(len(self.failures)),
            errors="0",
            skipped="0",
            time=f"{self.seconds:.3f}",
        )
        for result in self.results:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"smoke.{result.component}",
                name=f"{result.name}[{result.service}]",
                time=f"{result.seconds:.3f}",
            )
            if result.ok:
                ET.SubElement(case, "system-out").text = result.detail
            else:
                failure = ET.SubElement(case, "failure", message=result.cause[:500])
                failure.text = result.cause
        path.parent.mkdir(parents=True, exist_ok=True)
        ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def _run_one(check: Check) -> CheckResult:
    start = time.perf_counter()
    try:
        detail = check.run()
    except Exception as exc:
        # Any failure is the check's result, recorded with its cause; nothing is swallowed.
        cause = f"{type(exc).__name__}: {exc}".strip()
        logger.debug("smoke check %s[%s] failed", check.name, check.service, exc_info=True)
        return CheckResult(
            check.name,
            check.component,
            check.service,
            False,
            time.perf_counter() - start,
            "",
            cause,
        )
    return CheckResult(
        check.name, check.component, check.service, True, time.perf_counter() - start, detail
    )


def run_checks(
    checks: Sequence[Check], *, skipped: Iterable[str] = (), workers: int = 8
) -> SmokeReport:
    """Run ``checks`` concurrently and collect their results in order."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(checks) or 1))) as pool:
        results = tuple(pool.map(_run_one, checks))
    return SmokeReport(results, time.perf_counter() - start, tuple(skipped))
