"""Lease liveness: a dead holder is told from a live one without any server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from infra_lib.errors import ProvisionError
from infra_lib.leases import Lease, this_machine
from infra_lib.sessions import SessionNames


def test_a_lease_of_this_process_is_alive() -> None:
    lease = Lease.for_this_process("mainx1234abcd")
    assert lease.machine == this_machine()
    assert lease.alive()
    # A live holder on this machine stays alive after its TTL: the PID is the authority.
    assert lease.alive(now=lease.expires + 3600)


def test_a_lease_of_an_ended_process_is_dead() -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(child.stdout)
    lease = replace(Lease.for_this_process("mainx1234abcd"), pid=pid, started=None)
    assert not lease.alive()


def test_a_reused_pid_is_not_the_holder() -> None:
    lease = Lease.for_this_process("mainx1234abcd")
    assert lease.started is not None
    # Same PID, but the process it names started at another time.
    assert not replace(lease, started=lease.started - 1).alive()


def test_a_holder_on_another_machine_lives_until_its_ttl() -> None:
    lease = replace(
        Lease.for_this_process("mainx1234abcd"), machine="elsewhere/boot/1", pid=os.getpid()
    )
    assert lease.alive(now=lease.expires - 1)
    assert not lease.alive(now=lease.expires + 1)
    assert not replace(lease, expires=time.time() - 1).alive()


def test_leases_round_trip_and_garbage_is_not_a_lease() -> None:
    lease = replace(Lease.for_this_process("mainx1234abcd"), reclaiming=True)
    assert Lease.from_json(lease.tag, lease.to_json()) == lease
    for text in ("", "{}", "[]", '{"machine": "m", "pid": "x", "expires": 1}', "not json"):
        assert Lease.from_json("mainx1234abcd", text) is None


def test_session_names_derive_from_the_tag() -> None:
    names = SessionNames.new("gw3")
    assert names.tag.startswith("gw3x")
    assert names.database == f"pytest_{names.tag}"
    assert names.role == f"pytest_{names.tag}_user"
    assert names.owner == f"pytest-{names.tag}"
    assert names.redis_prefix == f"infra:test:{names.tag}:"
    assert names.object_prefix == f"pytest/{names.tag}/"
    assert SessionNames.new("gw3").tag != names.tag
    assert SessionNames.new("Weird Worker!").tag.startswith("weirdworkerx")


@pytest.mark.parametrize("tag", ["", "board", "x", "gw1x", "gw1-xabcdef12", "GW1xabcdef12"])
def test_session_tags_that_could_be_a_service_are_refused(tag: str) -> None:
    with pytest.raises(ProvisionError, match="invalid test session tag"):
        SessionNames(tag)


def test_a_killed_but_unreaped_holder_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lease = replace(Lease.for_this_process("mainx1234abcd"), pid=child.pid, started=None)
        assert lease.alive()
        child.kill()
        # Not waited for yet: a zombie, which os.kill(pid, 0) would still find.
        deadline = time.monotonic() + 10
        while lease.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not lease.alive()
    finally:
        child.wait()
