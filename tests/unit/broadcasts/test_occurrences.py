"""The occurrence state machine: its status follows what the speakers said, nothing else."""

from __future__ import annotations

import pytest

from hub.broadcasts.occurrences import (
    OUTCOMES,
    TRANSITIONS,
    Facts,
    IllegalTransition,
    Status,
    check,
    follow,
)


def facts(
    speakers: int, started: int = 0, finished: int = 0, preempted: int = 0, failed: int = 0
) -> Facts:
    return Facts(speakers, started, finished, preempted, failed)


def test_nothing_is_over_while_a_speaker_has_not_had_its_last_word() -> None:
    # 34 speakers have the play, none started: still dispatching, never "completed".
    assert follow(Status.DISPATCHING, facts(34)) is Status.DISPATCHING
    assert follow(Status.DISPATCHING, facts(34, started=1)) is Status.PLAYING
    assert follow(Status.PLAYING, facts(34, started=34, finished=33)) is Status.PLAYING


@pytest.mark.parametrize(
    ("said", "outcome"),
    [
        (facts(34, started=34, finished=34), Status.COMPLETED),
        (facts(34, started=34, preempted=34), Status.PREEMPTED),
        (facts(34, started=10, preempted=10, failed=24), Status.PREEMPTED),
        (facts(34, failed=34), Status.FAILED),
        (facts(34, started=20, finished=20, failed=14), Status.PARTIALLY_FAILED),
        (facts(34, started=20, finished=20, preempted=14), Status.PARTIALLY_FAILED),
    ],
)
def test_the_outcome_is_what_the_speakers_said(said: Facts, outcome: Status) -> None:
    assert follow(Status.PLAYING, said) is outcome
    check(Status.PLAYING, outcome)


def test_a_late_word_moves_one_outcome_to_another_but_never_reopens() -> None:
    assert follow(Status.FAILED, facts(2, started=1, finished=1, failed=1)) is (
        Status.PARTIALLY_FAILED
    )
    assert follow(Status.COMPLETED, facts(2, started=2, finished=1)) is Status.COMPLETED


@pytest.mark.parametrize("ended", [Status.CANCELLED, Status.MISSED, Status.SKIPPED])
def test_what_ended_otherwise_stays_ended(ended: Status) -> None:
    assert follow(ended, facts(3, started=3, finished=3)) is ended
    assert TRANSITIONS[ended] == frozenset()


def test_planned_is_left_only_by_dispatch_or_an_end_before_sending() -> None:
    assert follow(Status.PLANNED, facts(3, started=3, finished=3)) is Status.PLANNED
    with pytest.raises(IllegalTransition):
        check(Status.PLANNED, Status.COMPLETED)
    with pytest.raises(IllegalTransition):
        check(Status.COMPLETED, Status.PLAYING)
    assert all(Status.CANCELLED not in TRANSITIONS[o] for o in OUTCOMES)


def test_only_the_state_machine_writes_an_occurrence_status() -> None:
    import re
    from pathlib import Path

    import hub
    from hub.broadcasts import occurrences

    writes = re.compile(
        r"(UPDATE\s+broadcast_occurrence\b[^\"]*?\bSET\b[^\"]*?\bstatus\s*=)"
        r"|(INSERT\s+INTO\s+broadcast_occurrence\b)",
        re.IGNORECASE | re.DOTALL,
    )
    root = Path(hub.__file__).parent
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if path != Path(occurrences.__file__) and writes.search(path.read_text("utf-8"))
    ]
    assert offenders == []
    assert writes.search(Path(occurrences.__file__).read_text("utf-8"))
