from __future__ import annotations

from qbench.run.audit import audit_drain


def test_clean_drain_passes() -> None:
    result = audit_drain(
        [1, 1, 1],
        [1, 1, 1],
        [1, 1, 1],
        queue_states={"ready": 0, "leased": 0, "done": 3},
        expected_done_rows=3,
    )
    assert result.ok and result.message == ""
    assert (result.tasks_lost, result.tasks_duplicated, result.tasks_redelivered) == (0, 0, 0)


def test_lost_task_fails() -> None:
    result = audit_drain([1, 1, 0], [1, 1, 0], [1, 1, 0])
    assert not result.ok and result.tasks_lost == 1 and "1 of 3 tasks lost" in result.message


def test_redelivery_is_reported_and_allowed() -> None:
    # claimed twice (lease expired), executed twice, acknowledged once: at-least-once as designed
    result = audit_drain([2, 1], [2, 1], [1, 1])
    assert result.ok
    assert result.tasks_redelivered == 1 and result.tasks_duplicated == 1


def test_double_ack_fails() -> None:
    result = audit_drain([2, 1], [2, 1], [2, 1])
    assert not result.ok and result.tasks_acked_twice == 1 and "fence" in result.message


def test_execution_without_a_claim_fails() -> None:
    result = audit_drain([1, 1], [2, 1], [1, 1])
    assert not result.ok and "two workers at once" in result.message


def test_claims_while_a_lease_is_in_flight_fail() -> None:
    result = audit_drain([2, 1], [2, 1], [1, 1], double_handed=1)
    assert not result.ok and result.tasks_double_handed == 1


def test_unknown_acks_fail() -> None:
    assert not audit_drain([1], [1], [1], acks_unknown=2).ok


def test_queue_table_cross_check() -> None:
    leftover = audit_drain([1], [1], [1], queue_states={"ready": 1, "leased": 0, "done": 1})
    assert not leftover.ok and "still holds 1" in leftover.message
    short = audit_drain(
        [1], [1], [1], queue_states={"ready": 0, "leased": 0, "done": 1}, expected_done_rows=2
    )
    assert not short.ok and "expected 2" in short.message
