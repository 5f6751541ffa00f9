"""The attempt loop's rules when a fault strikes a job that has moved (found by the namespace fault test,
tests/test_faults.py): pure, no peers needed."""

from __future__ import annotations

from herd_mesh.core.attempts import Attempts, EngineFailed, Moved, Unreachable
from herd_mesh.core.work import Choice


def choices(*names: str) -> list[Choice]:
    return [Choice(n, float(i), "") for i, n in enumerate(names)]


def test_a_job_taken_from_the_entry_goes_back_there_when_the_taker_is_cut_off() -> None:
    """n1 queued the job itself, idle n0 took it (stolen), then a partition cut n0 off, and the other peers were
    down: n1 must run it rather than tell the client that every peer failed."""
    attempts = Attempts()
    assert attempts.pick(choices("n1", "n0")).node_id == "n1"  # type: ignore[union-attr]
    attempts.record(Moved("n1", "n0", stolen=True))
    assert attempts.pick(choices("n0")).node_id == "n0"  # type: ignore[union-attr]
    assert attempts.left == {"n1"}  # it never goes back while n0 has it
    attempts.record(Unreachable("n0", "the peer went down while answering"))
    choice = attempts.pick(choices("n1"))  # only n1 is up on its side of the partition
    assert choice is not None and choice.node_id == "n1"
    assert attempts.left == set() and attempts.report() == [
        {"node": "n0", "reason": "unreachable: the peer went down while answering"}
    ]


def test_while_the_taker_runs_it_the_job_never_goes_back_and_a_failed_peer_stays_out() -> None:
    attempts = Attempts()
    attempts.pick(choices("a", "b", "c"))
    attempts.record(Moved("a", "b", stolen=True))
    attempts.pick(choices("a", "b", "c"))
    attempts.record(Moved("b", "a", stolen=True))  # no ping-pong: a is left, so c
    assert attempts.pick(choices("a", "b", "c")).node_id == "c"  # type: ignore[union-attr]
    attempts.record(EngineFailed("c", "mflux exited with code 1"))
    assert attempts.pick(choices("a", "b", "c")).node_id == "a"  # type: ignore[union-attr]  # a and b gave it away
    attempts.record(Unreachable("a", "connection refused"))
    assert attempts.pick(choices("a", "b", "c")).node_id == "b"  # type: ignore[union-attr]  # c and a failed it
