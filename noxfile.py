"""Nox sessions: tests, lint, typecheck.

``nox -s tests`` needs the stack running (``inv up``): integration tests talk
to the real servers and fail, rather than skip, when one is missing.
"""

from __future__ import annotations

from pathlib import Path

import nox

# tests last: its summary is the run's closing line.
nox.options.sessions = ["lint", "typecheck", "smoke", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

TYPED = ["infra_lib", "tasks.py", "noxfile.py", "tests/typing"]


def _install(session: nox.Session) -> None:
    session.install("-e", ".[dev]")


def _tests_impl(session: nox.Session, *paths: str, extra: tuple[str, ...] = ()) -> None:
    _install(session)
    session.run(
        "pytest",
        *paths,
        "--junitxml",
        f"reports/junit-{session.name}.xml",
        *extra,
        *session.posargs,
        env={"PYTHONDONTWRITEBYTECODE": "1"},
    )


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests (integration needs the running stack)."""
    _tests_impl(session, "tests")


@nox.session
def unit(session: nox.Session) -> None:
    """Only the tests that need no server."""
    _tests_impl(session, "tests/unit")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and format check."""
    session.install("ruff>=0.17,<0.18")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the library, the tasks and this file."""
    _install(session)
    session.run("mypy", "--strict", *TYPED)


@nox.session
def smoke(session: nox.Session) -> None:
    """End-to-end checks of the running stack (or --env staging) with JUnit XML."""
    _install(session)
    session.run("inv", "smoke", "--junit", "reports/junit-smoke.xml", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the running stack; each prints ratios to its own baseline."""
    _install(session)
    scripts = sorted(str(p) for p in Path("benchmarks").glob("bench_*.py"))
    if session.posargs:
        scripts = [s for s in scripts if any(arg in s for arg in session.posargs)]
    for script in scripts:
        session.run("python", script)
