"""The embedded model's waiting line: FIFO per principal, turns between principals."""

from __future__ import annotations

from ownlight.backends.fair_queue import FairQueue


def drain(queue: FairQueue[str]) -> list[str]:
    out = []
    while (item := queue.pop()) is not None:
        out.append(item)
    return out


def test_one_principal_is_first_in_first_out() -> None:
    queue: FairQueue[str] = FairQueue()
    for item in ("a1", "a2", "a3"):
        queue.push("alice", item)
    assert len(queue) == 3
    assert drain(queue) == ["a1", "a2", "a3"] and len(queue) == 0


def test_a_heavy_user_takes_turns_with_the_others() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(1, 5):
        queue.push("alice", f"a{i}")
    queue.push("bob", "b1")
    queue.push("carol", "c1")
    queue.push("bob", "b2")
    assert drain(queue) == ["a1", "b1", "c1", "a2", "b2", "a3", "a4"]


def test_a_late_principal_waits_one_turn_not_the_whole_line() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(1, 4):
        queue.push("alice", f"a{i}")
    assert queue.pop() == "a1"
    queue.push("bob", "b1")
    assert drain(queue) == ["a2", "b1", "a3"]


def test_a_request_whose_client_left_is_taken_back() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("alice", "a1")
    queue.push("bob", "b1")
    assert queue.remove("b1") and not queue.remove("b1")
    assert queue.waiting_by_principal() == {"alice": 1}
    assert drain(queue) == ["a1"]
