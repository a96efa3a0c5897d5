"""The audit: what went into the queue must come out, exactly once.

Counted from the workers' side (which ids they claimed, executed and got
acknowledged), independent of the queue's tables, then cross-checked against
the table's own row counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Counts = Sequence[int] | npt.NDArray[np.integer]


@dataclass(frozen=True)
class AuditResult:
    tasks_enqueued: int
    # backlog tasks with at least one successful ack
    tasks_acked: int
    # enqueued and never acknowledged
    tasks_lost: int
    # executed more than once (expected only for redelivered tasks)
    tasks_duplicated: int
    # claimed more than once (a lease expired, the task came back)
    tasks_redelivered: int
    # acknowledged successfully more than once: the lease fence failed
    tasks_acked_twice: int
    # acknowledged ids that were never enqueued
    acks_unknown: int
    # claims that handed a task to a second worker while the first one's lease ran
    tasks_double_handed: int
    ok: bool
    # empty when ok; otherwise every reason, joined
    message: str
    # of tasks_lost, those the queue's declared delivery allows (at_most_once, a worker killed
    # holding them): a finding about the queue, not a failure
    tasks_lost_expected: int = 0


def audit_drain(
    claims: Counts,
    executions: Counts,
    acks: Counts,
    *,
    acks_unknown: int = 0,
    double_handed: int = 0,
    queue_states: Mapping[str, int] | None = None,
    expected_done_rows: int | None = None,
    loss_allowed: bool = False,
    client_leftover: bool | None = None,
    duplicates_allowed: bool = False,
) -> AuditResult:
    """Compare per-task counts from the workers' side; ``queue_states`` cross-checks the table.

    ``loss_allowed`` (at_most_once delivery with worker processes killed): a task claimed and
    never acknowledged is an expected loss, counted in ``tasks_lost_expected``; a task never
    claimed still fails. ``client_leftover``: a client-level queue still handed out a task.
    ``duplicates_allowed`` (a client-level queue, which promises at least once and no fence):
    tasks handed out twice and acknowledged twice are counted, not failures.
    """
    acks_a, claims_a, executions_a = np.asarray(acks), np.asarray(claims), np.asarray(executions)
    if not acks_a.shape == claims_a.shape == executions_a.shape:
        raise ValueError("claims, executions and acks must count the same tasks")
    n = len(acks_a)
    lost = int(np.count_nonzero(acks_a == 0))
    acked_twice = int(np.count_nonzero(acks_a > 1))
    duplicated = int(np.count_nonzero(executions_a > 1))
    redelivered = int(np.count_nonzero(claims_a > 1))
    # Handed to two workers at once: claimed while another lease was in flight (counted
    # by the workers), or executed more often than it was claimed.
    double_handed += int(np.count_nonzero(executions_a > claims_a))
    expected = int(np.count_nonzero((acks_a == 0) & (claims_a > 0))) if loss_allowed else 0
    reasons = []
    if lost > expected:
        reasons.append(f"{lost - expected} of {n} tasks lost (never acknowledged)")
    if client_leftover:
        reasons.append("the queue still hands out a task after every task was acknowledged")
    if acked_twice and not duplicates_allowed:
        reasons.append(f"{acked_twice} tasks acknowledged twice (lease fence failed)")
    if acks_unknown:
        reasons.append(f"{acks_unknown} acknowledgements for ids never enqueued")
    if double_handed and not duplicates_allowed:
        reasons.append(f"{double_handed} claims handed a task to two workers at once")
    if queue_states is not None:
        reasons += _table_reasons(queue_states, expected_done_rows)
    return AuditResult(
        tasks_enqueued=n,
        tasks_acked=n - lost,
        tasks_lost=lost,
        tasks_duplicated=duplicated,
        tasks_redelivered=redelivered,
        tasks_acked_twice=acked_twice,
        acks_unknown=acks_unknown,
        tasks_double_handed=double_handed,
        ok=not reasons,
        tasks_lost_expected=expected,
        message="; ".join(reasons),
    )


def _table_reasons(queue_states: Mapping[str, int], expected_done_rows: int | None) -> list[str]:
    """What the queue table's own row counts say is wrong after the drain."""
    reasons = []
    leftover = queue_states.get("ready", 0) + queue_states.get("leased", 0)
    if leftover:
        reasons.append(f"queue table still holds {leftover} ready or leased tasks")
    if expected_done_rows is not None and queue_states.get("done", 0) != expected_done_rows:
        reasons.append(
            f"queue table holds {queue_states.get('done', 0)} done rows, expected {expected_done_rows}"
        )
    return reasons
