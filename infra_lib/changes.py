"""What an idempotent step did, in one spelling for every module and report."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Change"]


class Change(StrEnum):
    """What provisioning (or a dry run of it) did to one thing.

    A ``StrEnum``, so a report row prints and serialises as its value.
    """

    CREATED = "created"
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    #: A dry run found something to do and did not do it.
    PLANNED = "planned"
    #: The server does not implement this aspect; nothing was changed.
    UNSUPPORTED = "unsupported"
