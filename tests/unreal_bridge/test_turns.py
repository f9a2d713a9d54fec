"""The rule of fair turns at the generator pool (`unreal_bridge.turns`), without a pool."""

from __future__ import annotations

from worldstream.unreal_bridge.turns import Turns

NOBODY_BEHIND = (lambda client: 0)  # noqa: E731


def serve(turns: Turns, waiting: list, backlog=NOBODY_BEHIND, finish: bool = True) -> str:
    client = turns.next(waiting, backlog)
    if finish:
        turns.finished(client)
    return client


def test_round_robin_in_order_of_arrival():
    turns = Turns()
    for c in "abc":
        turns.arrive(c)
    assert [serve(turns, ["a", "b", "c"]) for _ in range(3)] == ["a", "b", "c"]
    assert [serve(turns, ["a", "b", "c"]) for _ in range(3)] == ["a", "b", "c"]


def test_a_client_whose_queue_emptied_keeps_its_place_ahead_of_later_newcomers():
    """The defect this rule fixes: a client re-planning at 30 Hz empties and refills its queue all
    the time; it must not go to the back of the round behind every client that came meanwhile."""
    turns = Turns()
    turns.arrive("polite")
    assert serve(turns, ["polite"]) == "polite"
    newcomers = [f"holder{i}" for i in range(50)]
    for c in newcomers:
        turns.arrive(c)
    first = serve(turns, newcomers)  # polite asked for nothing meanwhile
    turns.arrive("polite")  # its next view: a job again
    waiting = [c for c in newcomers if c != first] + ["polite"]
    # every newcomer arrived after polite's turn, so it waits for polite: polite is next
    assert serve(turns, waiting) == "polite"
    assert serve(turns, waiting) != "polite"


def test_a_newcomer_joins_the_end_of_the_round():
    turns = Turns()
    for c in "ab":
        turns.arrive(c)
    assert serve(turns, ["a", "b"]) == "a"
    turns.arrive("c")  # came after a's turn, before b's
    assert [serve(turns, ["a", "b", "c"]) for _ in range(3)] == ["b", "a", "c"]


def test_a_client_with_a_job_in_the_pool_waits_for_one_without():
    turns = Turns()
    for c in "ab":
        turns.arrive(c)
    assert serve(turns, ["a", "b"], finish=False) == "a"
    assert serve(turns, ["a", "b"], finish=False) == "b"
    turns.finished("b")
    assert turns.in_pool("a") == 1 and turns.in_pool("b") == 0
    # a's last turn is older, but its job is still being made: b goes first
    assert serve(turns, ["a", "b"], finish=False) == "b"
    turns.finished("a")
    turns.finished("b")
    assert turns.in_pool("a") == 0 and turns.in_pool("b") == 0


def test_the_backlog_comes_before_the_round():
    turns = Turns()
    for c in "ab":
        turns.arrive(c)
    backlog = {"a": 3, "b": 1}.__getitem__
    assert [serve(turns, ["a", "b"], backlog) for _ in range(3)] == ["b", "b", "b"]


def test_a_forgotten_client_that_asks_again_joins_as_a_newcomer():
    turns = Turns()
    for c in "ab":
        turns.arrive(c)
    assert serve(turns, ["a", "b"]) == "a"
    turns.forget("a")
    turns.arrive("a")
    assert [serve(turns, ["a", "b"]) for _ in range(2)] == ["b", "a"]
