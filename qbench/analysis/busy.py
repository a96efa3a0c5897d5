"""Busy answers: where busy errors begin, per busy timeout, and the busy timeout the lock waits ask for.

Onset: on each busy-timeout curve of a workload and storage setting (every key
of the recommended config fixed but workers and ``busy.timeout_ms``, under
``busy.policy=native``), the first worker count whose median busy rate exceeds
the threshold, or "never, up to the largest worker count tried" with that count.

Timeout: the largest per-iteration p99.9 of the lock waits
(``lock_wait_p999_ms``) at the recommended worker count, under
``busy.policy=native`` and the longest busy timeout measured there (the one
that cut off the fewest waits), times :data:`MARGIN`, rounded up to a
1-2-5 step and at least :data:`FLOOR_MS`. When busy errors still reached the
application at that timeout, some waits were cut off and the figure is a
lower bound: the evidence says so. Never the default timeout: a figure that
was not measured gives no recommendation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from qbench.analysis.summary import same_config
from qbench.analysis.thresholds import Thresholds

# The recommended busy timeout is this many times the measured lock-wait p99.9 ...
MARGIN = 2.0
# ... rounded up to the next 1-2-5 step (1, 2, 5, 10, 20, 50, ... ms) ...
STEPS = (1, 2, 5)
# ... and at least this: SQLite's busy handler sleeps 1, 2, 5 then 10 ms, so a shorter
# timeout allows at most three tries however short the waits measured.
FLOOR_MS = 10
# the busy settings the onset and timeout curves vary; every other key is held at the recommended config's
BUSY_KEYS = ("busy_timeout_ms", "busy_policy")
NATIVE = "native"
_TIMES = "\N{MULTIPLICATION SIGN}"


def step_up(ms: float) -> int:
    """The smallest 1-2-5 step (in ms) at or above ``ms``, and at least :data:`FLOOR_MS`."""
    if not math.isfinite(ms) or ms <= FLOOR_MS:
        return FLOOR_MS
    decade = 10 ** math.floor(math.log10(ms))
    for step in (*STEPS, 10):
        if step * decade >= ms - 1e-9:
            return int(step * decade)
    return int(10 * decade)  # pragma: no cover - the loop ends at 10 * decade >= ms


@dataclass(frozen=True)
class Onset:
    """Where busy errors begin on one busy-timeout curve."""

    timeout_ms: int
    # the first worker count whose median busy rate exceeds the threshold; None: never
    workers: int | None
    # the largest worker count tried on the curve
    tried: int

    def phrase(self) -> str:
        where = f"busy.timeout_ms={self.timeout_ms}"
        if self.workers is None:
            return f"{where}: never, up to {_workers(self.tried)}"
        return f"{where}: from {_workers(self.workers)}"


def _workers(n: int) -> str:
    return f"{n} worker" + ("" if n == 1 else "s")


def onset(curve: pd.DataFrame, t: Thresholds) -> tuple[int | None, int]:
    """The first worker count on ``curve`` (summary rows) whose median busy rate exceeds the
    threshold (None: never), and the largest worker count tried."""
    ordered = curve.sort_values("workers")
    busy = ordered[pd.to_numeric(ordered["busy_rate_median"], errors="coerce") > t.busy_rate]
    first = int(busy.iloc[0]["workers"]) if len(busy) else None
    return first, int(ordered["workers"].max())


def onsets_by_timeout(
    group: pd.DataFrame, chosen: pd.Series, curve_keys: Sequence[str], t: Thresholds
) -> list[Onset]:
    """The onset on each busy-timeout curve (busy.policy=native) through ``chosen``'s other keys."""
    family = same_config(group, chosen, [k for k in curve_keys if k not in BUSY_KEYS])
    if "busy_policy" in family:
        family = family[family["busy_policy"].astype(str) == NATIVE]
    if family.empty or "busy_timeout_ms" not in family:
        return []
    out = []
    for timeout, curve in family.groupby("busy_timeout_ms", sort=True):
        first, tried = onset(curve, t)
        out.append(Onset(int(timeout), first, tried))
    return out


@dataclass(frozen=True)
class BusyTimeout:
    """The busy timeout the measured lock waits ask for, with its evidence."""

    # recommended busy.timeout_ms; None when no lock wait was measured
    timeout_ms: int | None
    # the largest per-iteration lock-wait p99.9 it comes from
    lock_wait_p999_ms: float | None
    evidence: str


def _evidence_rows(
    iterations: pd.DataFrame, chosen: pd.Series, keys: Sequence[str]
) -> tuple[pd.DataFrame, str, bool]:
    """The measured iterations the lock waits are read from, the setting they were measured under,
    and whether that setting waited natively (busy.policy=app never waits: its busy timeout is 0)."""
    family = same_config(iterations, chosen, [k for k in keys if k not in BUSY_KEYS])
    native = family
    if "busy_policy" in family:
        native = family[family["busy_policy"].astype(str) == NATIVE]
    if not native.empty and "busy_timeout_ms" in native:
        longest = native["busy_timeout_ms"].max()
        rows = native[native["busy_timeout_ms"] == longest]
        return rows, f"busy.policy=native, busy.timeout_ms={int(longest)}", True
    rows = same_config(iterations, chosen, keys)
    return rows, f"busy.policy={chosen.get('busy_policy')}, which never waits for the lock", False


def busy_timeout(iterations: pd.DataFrame, chosen: pd.Series, keys: Sequence[str]) -> BusyTimeout:
    """The busy timeout for ``chosen`` (a summary row) from its lock waits (measured iterations)."""
    rows, setting, waited = _evidence_rows(iterations, chosen, keys)
    at = _workers(int(chosen["workers"]))
    column = rows["lock_wait_p999_ms"] if "lock_wait_p999_ms" in rows else pd.Series(dtype=float)
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        client = "queue_level" in rows and (rows["queue_level"].astype(str) == "client").any()
        why = (
            "a client-level queue runs its own statements, whose lock waits qbench cannot see"
            if client
            else "metrics.level=minimal, or results written before schema version 4"
        )
        return BusyTimeout(
            None, None, f"no lock-wait p99.9 was measured at {at} ({why}): no busy timeout is recommended"
        )
    p999 = float(values.max())
    recommended = step_up(MARGIN * p999)
    text = (
        f"lock-wait p99.9 up to {p999:.3g} ms over {values.size} iteration"
        f"{'' if values.size == 1 else 's'} at {at} ({setting}); {_TIMES}{MARGIN:g} rounded up to a "
        f"1-2-5 step, at least {FLOOR_MS} ms: {recommended} ms"
    )
    busy = pd.to_numeric(rows.get("busy_total", pd.Series(dtype=float)), errors="coerce").fillna(0).sum()
    if busy > 0 or not waited:
        text += (
            f"; a lower bound: {int(busy)} busy errors reached the application there, "
            "so some waits were cut off"
        )
    return BusyTimeout(recommended, p999, text)


def busy_columns(
    group: pd.DataFrame,
    iterations: pd.DataFrame,
    chosen: pd.Series,
    on_curve: pd.DataFrame,
    keys: Sequence[str],
    t: Thresholds,
) -> dict[str, object]:
    """The recommendations row's busy answers for ``chosen`` (the recommended config)."""
    curve_keys = [k for k in keys if k != "workers"]
    onsets = onsets_by_timeout(group, chosen, curve_keys, t)
    timeout = busy_timeout(iterations, chosen, keys)
    return {
        "busy_onset_tried_workers": int(on_curve["workers"].max()),
        "busy_onset_by_timeout": "; ".join(o.phrase() for o in onsets) or None,
        "lock_wait_p999_ms": timeout.lock_wait_p999_ms,
        "busy_timeout_recommended_ms": timeout.timeout_ms,
        "busy_timeout_evidence": timeout.evidence,
    }
