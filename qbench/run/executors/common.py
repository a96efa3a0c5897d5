"""What every executor shares: the per-claim audit bookkeeping, the busy backoff,
the livelock decision and the timeout message.

Nothing here waits or takes a lock: each executor calls these from its own
loop (coroutines, or threads holding the executor's lock).
"""

from __future__ import annotations

import random
import time
from array import array
from typing import Any, Protocol

from qbench.errors import DrainTimeoutError, LivelockError
from qbench.kinds import BusyPolicy
from qbench.run.executors.protocol import DrainResult, DrainSpec
from qbench.run.metrics import DrainStats
from qbench.run.queues.protocol import Claimed
from qbench.run.service import ServiceTimes


def service_times(spec: DrainSpec) -> ServiceTimes:
    """Each task's service time for this drain, drawn from ``spec.seed`` (the same in every executor)."""
    return ServiceTimes(spec.service_dist, spec.service_s, spec.service_sigma, spec.seed, spec.tasks)


def backoff_s(spec: DrainSpec, attempt: int, rng: random.Random) -> float:
    """Seconds to wait before retry ``attempt`` (1 on): 0 for ``native`` (SQLite's busy handler
    already waited), a capped exponential backoff with full jitter for ``app``."""
    if spec.busy_policy is BusyPolicy.APP:
        cap = min(spec.backoff_cap_s, spec.backoff_base_s * 2 ** min(attempt - 1, 30))
        return rng.uniform(0.0, cap)
    return 0.0


class SharedAcks(Protocol):
    """First acks counted across processes (executor=process): the drain is complete when
    the total reaches the tasks, whichever process acknowledged them."""

    def add(self, n: int) -> int:
        """Add ``n`` first acks; the total so far, every process included."""
        ...

    def total(self) -> int: ...


class Ledger:
    """Per backlog task: claims, executions and acks, who holds its lease, its first claim's and
    first ack's times.

    ``stats`` receives the per-task arrays and the claim/ack counters; ``t_start`` is the
    drain's start (perf_counter), from which end-to-end latencies are measured. With
    ``shared`` (executor=process) completion counts every process's first acks.
    """

    def __init__(self, spec: DrainSpec, stats: DrainStats, shared: SharedAcks | None = None) -> None:
        self.stats = stats
        self.lease_s = spec.lease_s
        self.shared = shared
        self.acked_unique = 0
        self.t_start = 0.0
        self.t_last_ack = 0.0
        self._first, self._n = spec.first_id, spec.tasks
        # executor=process with an unfenced (client-level) queue: a task's first ack counts
        # toward the shared total only in the first process to acknowledge it
        flags = getattr(shared, "flags", None)
        self._first_anywhere = shared.first_anywhere if flags is not None else None  # type: ignore[union-attr]
        # per backlog task, the claim in flight: its lease token (0: none; tokens count from 1)
        # and wall-clock expiry, as compact arrays (16 bytes a task; array, not numpy: one
        # element read or written from Python is several times cheaper)
        self._holder = array("q", bytes(8 * spec.tasks))
        self._expiry = array("d", bytes(8 * spec.tasks))
        # the per-task arrays of ``stats`` (numpy, for the audit and the row) seen through
        # memoryviews: one element read or written from Python costs half as much, and reads
        # give plain ints and floats (the hot loop touches each task several times)
        # (typed Any: typeshed's memoryview takes only ints, and these views take floats too)
        self._claims: Any = stats.claims.data
        self._claimed_s: Any = stats.claimed_s.data
        self._executions: Any = stats.executions.data
        self._acks: Any = stats.acks.data
        self._e2e_s: Any = stats.e2e_s.data

    @property
    def complete(self) -> bool:
        if self.shared is not None:
            return self.shared.total() >= self._n
        return self.acked_unique >= self._n

    def hold(self, claimed: list[Claimed], token: int, claimed_at: float) -> None:
        """Count the claims of backlog tasks and note who holds each lease, until when."""
        stats, holder, expiry, first, n = self.stats, self._holder, self._expiry, self._first, self._n
        received = time.time()
        since_start = time.perf_counter() - self.t_start
        claims, claimed_s = self._claims, self._claimed_s
        expires_at = claimed_at + self.lease_s
        for task in claimed:
            index = task.id - first
            if 0 <= index < n:
                before = claims[index]
                if before == 0:
                    claimed_s[index] = since_start
                # attempts > our own claims: a consumer outside this drain held it before
                claims[index] = max(before + 1, task.attempts)
                # Claimed again while another worker's lease is still running: the queue
                # handed one task to two workers at once. (10 ms of slack for clock reads.)
                if holder[index] and received < expiry[index] - 0.01:
                    stats.double_handed += 1
                holder[index] = token
                expiry[index] = expires_at

    def executed(self, claimed: list[Claimed]) -> list[int]:
        """Count the served tasks' executions; their ids, to acknowledge."""
        executions, first, n = self._executions, self._first, self._n
        ids = []
        for task in claimed:
            index = task.id - first
            if 0 <= index < n:
                executions[index] += 1
            ids.append(task.id)
        return ids

    def release(self, token: int, ids: list[int]) -> None:
        """This claim is over, acknowledged or not: its leases are no longer held."""
        holder, first, n = self._holder, self._first, self._n
        for task_id in ids:
            index = task_id - first
            if 0 <= index < n and holder[index] == token:
                holder[index] = 0

    def count_acks(self, ids: list[int], acked: list[int] | None) -> bool:
        """Count the acknowledgements (None: given up); True once every task has one."""
        stats, first, n = self.stats, self._first, self._n
        if acked is None:
            stats.acks_given_up += len(ids)
            return False
        stats.acks_rejected += len(ids) - len(acked)
        acks, e2e_s = self._acks, self._e2e_s
        now = time.perf_counter()
        first_acks = counted = 0
        mark = self._first_anywhere
        for task_id in acked:
            index = task_id - first
            if not 0 <= index < n:
                stats.acks_unknown += 1
                continue
            acks[index] += 1
            if acks[index] == 1:
                first_acks += 1
                counted += 1 if mark is None else mark(index)
                e2e_s[index] = now - self.t_start
                self.t_last_ack = now
        self.acked_unique += first_acks
        if self.shared is not None:
            return (self.shared.add(counted) if counted else self.shared.total()) >= n
        return self.acked_unique >= n


class LivelockWatch:
    """The watchdog's decision, fed about once a ``tick``: a livelock once no task got its
    first ack for ``window_s`` seconds while the busy errors grew at every look.

    A look with no new busy error, with a new first ack, or one that came late (the
    watcher was held, e.g. by cpu service, so nothing can be judged) starts the window again.
    """

    def __init__(self, spec: DrainSpec, window_s: float, now: float, acked: int, busy: int) -> None:
        self.spec = spec
        self.window_s = window_s
        self.tick = min(1.0, max(0.05, self.window_s / 4))
        self._last = self._since = now
        self._acked = acked
        self._busy_since = self._busy_last = busy

    def look(self, now: float, acked: int, busy: int) -> LivelockError | None:
        late = now - self._last > 2 * self.tick + 0.1
        found = None
        if late or busy == self._busy_last or acked != self._acked:
            self._since, self._acked, self._busy_since = now, acked, busy
        elif now - self._since >= self.window_s:
            found = livelock(self.spec, acked, now - self._since, busy - self._busy_since)
        self._last, self._busy_last = now, busy
        return found


def livelock(spec: DrainSpec, acked: int, window_s: float, busy: int) -> LivelockError:
    return LivelockError(
        f"livelock: 0 acks in {window_s:.1f} s, {busy:,} busy retries"
        f" ({acked} of {spec.tasks} tasks acknowledged; the workers keep colliding"
        f" and none gets through; watchdog_s={spec.watchdog_s:g})",
        acked=acked,
        tasks=spec.tasks,
        window_s=window_s,
        busy=busy,
    )


def timeout_error(spec: DrainSpec, stats: DrainStats) -> DrainTimeoutError:
    """The drain did not finish within ``spec.timeout_s``, with a hint when leases were too short."""
    hint = ""
    if stats.acks_rejected:
        hint = (
            f"; {stats.acks_rejected} acks came after their lease expired:"
            " queue.lease_s may be shorter than a claimed batch takes to serve"
        )
    return DrainTimeoutError(
        f"the backlog was not drained within iteration_timeout_s={spec.timeout_s:g}: "
        f"{stats.tasks_acked} of {spec.tasks} tasks acknowledged{hint}"
    )


def merge_stats(into: DrainStats, part: DrainStats) -> None:
    """Add a worker's counters and timings (not its per-task lists, which are shared) to ``into``."""
    into.transactions += part.transactions
    into.retries += part.retries
    into.claims_empty += part.claims_empty
    into.claims_given_up += part.claims_given_up
    for phase, count in part.busy_by_phase.items():
        into.busy_by_phase[phase] += count
    for code, count in part.busy_by_code.items():
        into.busy_by_code[code] += count
    into.lock_wait_s.extend(part.lock_wait_s)
    into.pool_wait_s.extend(part.pool_wait_s)
    into.claim_latency_s.extend(part.claim_latency_s)
    into.service_s.extend(part.service_s)


__all__ = [
    "Ledger",
    "LivelockWatch",
    "backoff_s",
    "livelock",
    "merge_stats",
    "service_times",
    "timeout_error",
]


def start_clock(spec: DrainSpec, ledger: Ledger) -> float:
    """Start the drain's clock (``ledger.t_start``: per-task times count from here), then tell
    ``spec.on_start`` (a worker process waits there for its release); the iteration's deadline."""
    ledger.t_start = time.perf_counter()
    if spec.on_start is not None:
        spec.on_start(ledger.t_start)
    return ledger.t_start + spec.timeout_s


def finished(spec: DrainSpec, result: DrainResult) -> DrainResult:
    """The drain's result, or the error that ended it: the watchdog's livelock, or the timeout.

    Raises:
        LivelockError: the watchdog found no first ack for ``spec.watchdog_s`` while busy errors grew.
        DrainTimeoutError: the backlog was not drained within ``spec.timeout_s``.
    """
    if result.livelock is not None:
        raise result.livelock
    if result.timed_out:
        raise timeout_error(spec, result.stats)
    return result
