"""Run a program and move its output to a file (or a file to its input) in big chunks.

python-on-whales' ``execute(..., stream=True)`` hands output over line by
line through a queue: fine for logs, far too slow for a binary dump of a
gigabyte. Here the program (``docker compose exec -T ...`` or a local
``pg_dump``) runs under :class:`subprocess.Popen` and its pipe is read into
one reused 1 MiB buffer, so memory stays flat whatever the size of the
data, and each chunk is hashed and written as it arrives.

Error output goes to an unnamed temporary file rather than a second pipe,
so a chatty program can never block on a full stderr pipe while we read
stdout; its tail ends up in the error message.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from infra_lib.backup.model import ProgressCallback
from infra_lib.errors import BackupError

__all__ = ["CHUNK", "Command", "Throttle", "capture", "drain", "feed_file"]

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
#: Linux's F_SETPIPE_SZ: a 1 MiB pipe lets one read return a whole chunk.
_F_SETPIPE_SZ = 1031
_STDERR_TAIL = 4000


@dataclass(frozen=True, slots=True)
class Command:
    """A program to run: argument list, extra environment, and a name for messages.

    ``env`` is added to this process's environment for the child only; it is
    where a password goes, never ``argv`` (which is logged).
    """

    argv: tuple[str, ...]
    what: str
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    def child_env(self) -> dict[str, str] | None:
        if not self.env:
            return None
        return {**os.environ, **self.env}


class Throttle:
    """Calls a progress callback at most every ``interval`` seconds (and at the end)."""

    def __init__(
        self,
        callback: ProgressCallback | None,
        label: str,
        total: int | None = None,
        *,
        interval: float = 0.2,
    ) -> None:
        self._callback = callback
        self._label = label
        self._total = total
        self._interval = interval
        self._last = 0.0
        self.done = 0

    def add(self, count: int) -> None:
        self.done += count
        if self._callback is None:
            return
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._callback(self.done, self._total, self._label)

    def finish(self) -> None:
        if self._callback is not None:
            self._callback(
                self.done, self._total if self._total is not None else self.done, self._label
            )


def _grow_pipe(handle: IO[bytes]) -> None:
    with contextlib.suppress(OSError):
        fcntl.fcntl(handle.fileno(), _F_SETPIPE_SZ, CHUNK)


def _tail(err: IO[bytes]) -> str:
    err.flush()
    size = err.seek(0, os.SEEK_END)
    err.seek(max(0, size - _STDERR_TAIL))
    return err.read().decode(errors="replace").strip()


def _start(
    command: Command,
    *,
    stdin: int | None,
    stdout: int | IO[bytes] | None,
    stderr: IO[bytes],
    buffered: bool = False,
) -> subprocess.Popen[bytes]:
    logger.debug("running %s", shlex.join(command.argv))
    try:
        return subprocess.Popen(
            command.argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=command.child_env(),
            bufsize=-1 if buffered else 0,
        )
    except OSError as exc:
        raise BackupError(f"cannot run {command.what} ({command.argv[0]}): {exc}") from exc


def _check(command: Command, proc: subprocess.Popen[bytes], err: IO[bytes]) -> str:
    code = proc.wait()
    tail = _tail(err)
    if code != 0:
        detail = f": {tail}" if tail else " and printed nothing on stderr"
        raise BackupError(f"{command.what} failed (exit status {code}){detail}")
    if tail:
        logger.warning("%s: %s", command.what, tail)
    return tail


def drain(
    command: Command,
    sink: Callable[[memoryview], object],
    *,
    progress: Throttle | None = None,
) -> str:
    """Run ``command`` and pass its standard output to ``sink`` chunk by chunk.

    Each chunk is a view into one reused buffer: ``sink`` must consume it
    before returning. A non-zero exit raises :class:`BackupError` with the
    tail of the program's stderr; if ``sink`` raises, the program is killed.
    Returns whatever the program wrote on stderr (e.g. warnings).
    """
    with tempfile.TemporaryFile() as err:
        # A buffered pipe fills the whole chunk per call (the raw reads loop in
        # C), instead of handing over the ~14 KiB pieces `docker compose`
        # writes: a thirtieth of the Python work per gigabyte.
        proc = _start(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, buffered=True
        )
        stdout = proc.stdout
        if stdout is None:
            raise RuntimeError("Popen gave no stdout pipe")
        _grow_pipe(stdout)
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        try:
            while n := stdout.readinto(buf):  # type: ignore[attr-defined]
                sink(view[:n])
                if progress is not None:
                    progress.add(n)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            stdout.close()
        result = _check(command, proc, err)
        if progress is not None:
            progress.finish()
        return result


def feed_file(command: Command, path: Path, *, progress: Throttle | None = None) -> str:
    """Run ``command`` with the file at ``path`` on its standard input; check its exit status.

    The bytes go from the file to the program's pipe inside the kernel
    (``sendfile``), without a copy through Python buffers on a 2-CPU machine
    that ``pg_restore`` and the server also need. A pipe, not the
    file itself, is the program's input so that it sees the end of its input
    when this process dies, and stops. When the program stops reading early
    (it failed), the rest is dropped and its exit status and stderr explain why.
    """
    with path.open("rb", buffering=0) as source, tempfile.TemporaryFile() as err:
        proc = _start(command, stdin=subprocess.PIPE, stdout=err, stderr=err)
        stdin = proc.stdin
        if stdin is None:
            raise RuntimeError("Popen gave no stdin pipe")
        _grow_pipe(stdin)
        try:
            _copy(source, stdin, progress)
        except BrokenPipeError:
            logger.debug("%s stopped reading its input early", command.what)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            with contextlib.suppress(BrokenPipeError):
                stdin.close()
        result = _check(command, proc, err)
        if progress is not None:
            progress.finish()
        return result


def _copy(source: IO[bytes], sink: IO[bytes], progress: Throttle | None) -> None:
    """All of ``source`` into ``sink``: by ``sendfile`` where the system allows it."""
    src, dst = source.fileno(), sink.fileno()
    try:
        while sent := os.sendfile(dst, src, None, 8 * CHUNK):
            if progress is not None:
                progress.add(sent)
    except OSError as exc:
        # sendfile into a pipe is Linux's; elsewhere it refuses before a byte moves.
        if isinstance(exc, BrokenPipeError) or os.lseek(src, 0, os.SEEK_CUR) != 0:
            raise
    else:
        return
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while n := source.readinto(buf):  # type: ignore[attr-defined]
        chunk = view[:n]
        while chunk:
            written = sink.write(chunk)
            chunk = chunk[written or 0 :]
        if progress is not None:
            progress.add(n)


def capture(command: Command, *, timeout: float = 60) -> str:
    """Run a short command and return its standard output as text."""
    logger.debug("running %s", shlex.join(command.argv))
    try:
        done = subprocess.run(
            command.argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=command.child_env(),
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackupError(f"cannot run {command.what}: {exc}") from exc
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip()[-_STDERR_TAIL:]
        raise BackupError(f"{command.what} failed (exit status {done.returncode}): {tail}")
    return done.stdout.decode(errors="replace")


def join_args(args: Sequence[str]) -> str:
    """``args`` quoted for a log line or message."""
    return shlex.join(args)
