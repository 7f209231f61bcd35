"""Running a command inside a container of the stack, for the experiments."""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra_lib.errors import StackError

if TYPE_CHECKING:
    from python_on_whales import Container

    from infra_lib.stack.compose import Stack


def run_in(
    stack: Stack, container: Container, command: list[str], *, user: str | None = None
) -> str:
    """``command``'s output in ``container``; a failure is a :class:`StackError` naming both.

    Only the last line of Docker's message is kept: the rest repeats the
    whole ``docker exec`` argument list.
    """
    from python_on_whales.exceptions import DockerException

    what = "a shell" if command[0] == "sh" else command[0]
    try:
        out = stack.docker.container.execute(container, command, user=user)
    except DockerException as exc:
        raise StackError(
            f"could not run {what} in {container.name}: {str(exc).strip().splitlines()[-1]}"
        ) from exc
    return str(out or "")
