"""The report's findings about the measurements' health: noisy configurations, configurations
above their ceiling, results measured without the host guard, what each queue lost or
delivered twice, and the tasks lost over all."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from qbench.report.curves import _config_columns
from qbench.report.plots import _fmt, _num
from qbench.report.words import distinguishing, name_by, plural


def _config_names(summary: pd.DataFrame, mask: pd.Series) -> str:
    """The configs picked by ``mask``, each named by the keys that tell the summary's configs apart."""
    cols = ["host", *_config_columns(summary), "workers"]
    rows = summary[cols].to_dict("records")
    varying = distinguishing(rows, cols) or ["workers"]
    names = [name_by(r, varying) for r, keep in zip(rows, mask, strict=True) if keep]
    return "; ".join(names[:5]) + (" …" if len(names) > 5 else "")


def _health_findings(summary: pd.DataFrame, th: Mapping[str, float]) -> list[str]:
    items = []
    if "noisy" in summary:
        noisy = summary["noisy"].fillna(False).astype(bool)
        cv = f"above {_fmt(th['cv'], 'pct')}" if "cv" in th else "above the noise threshold"
        listed = f": {_config_names(summary, noisy)}" if noisy.any() else ""
        count = f"{int(noisy.sum())} of {plural(len(summary), 'configuration')}"
        items.append(f"{count} {'is' if noisy.sum() == 1 else 'are'} noisy (throughput CV {cv}){listed}.")
    above = pd.to_numeric(summary.get("harness_efficiency_median", pd.Series(dtype=float))) > 1.0
    if above.any():
        top = _fmt(summary.loc[above, "harness_efficiency_median"].max(), "pct")
        items.append(
            f"{plural(int(above.sum()), 'configuration')} measured above the single-connection ceiling "
            f"(up to {top} of it: {_config_names(summary, above)}). {_ceiling_noise(summary, above)}"
        )
    if "host_lock" in summary and (unguarded := summary["host_lock"].astype(str) == "off").any():
        items.append(
            f"{plural(int(unguarded.sum()), 'configuration')} measured with host_lock=off "
            f"({_config_names(summary, unguarded)}): other jobs may have measured on the same host at "
            "the same time, so their figures may be spoiled by contention."
        )
    items += _delivery_findings(summary)
    lost = _fmt(summary.get("tasks_lost_total", pd.Series(dtype=float)).sum(), "int")
    dup = _fmt(summary.get("tasks_duplicated_total", pd.Series(dtype=float)).sum(), "int")
    expected = summary.get("tasks_lost_expected_total", pd.Series(dtype=float)).sum()
    lost += f" ({_fmt(expected, 'int')} of them the at-most-once losses above)" if expected > 0 else ""
    return [*items, f"Tasks lost: {lost}; tasks processed twice: {dup}, over all configurations."]


# queues driven through their own API (queue=custom may be either: its rows say queue_level)
_CLIENT_QUEUES = ("huey", "litequeue", "persist_queue", "custom")


def _delivery_findings(summary: pd.DataFrame) -> list[str]:
    """Tasks an at_most_once queue lost with its killed workers, said plainly, per configuration;
    and, when client-level queues were measured, what their ceiling is."""
    items = []
    if "tasks_lost_expected_total" in summary:
        for _, r in summary[summary["tasks_lost_expected_total"] > 0].iterrows():
            kills = int(r.get("faults_injected_total", 0) or 0)
            where = _config_names(summary, summary["config_id"] == r["config_id"])
            items.append(
                f"{where}: the queue lost {plural(int(r['tasks_lost_expected_total']), 'task')} with"
                f" {plural(kills, 'killed worker process', 'killed worker processes')} over"
                f" {plural(int(r['iterations']), 'iteration')}: it delivers at most once (the task"
                " leaves the queue when a worker takes it), so what a dying worker holds is gone."
                " A finding about this queue, not a failure of the job."
            )
    client = summary["queue_kind"].astype(str).isin(_CLIENT_QUEUES) if "queue_kind" in summary else None
    if client is not None and "tasks_duplicated_total" in summary:
        for _, r in summary[client & (summary["tasks_duplicated_total"] > 0)].iterrows():
            where = _config_names(summary, summary["config_id"] == r["config_id"])
            items.append(
                f"{where}: the queue handed {plural(int(r['tasks_duplicated_total']), 'task')} to a second"
                f" worker, which ran it again, over {plural(int(r['iterations']), 'iteration')}: at least"
                " once allows it, so the job stays ok; tasks must be idempotent on this queue."
            )
    if "queue_kind" in summary and summary["queue_kind"].astype(str).ne("sqlite").any():
        items.append(
            "The ceiling is qbench's reference statements on one plain sqlite3 connection, on the"
            " same file system, for every queue: a queue library's share of it tells how far the"
            " library sits from what SQLite itself does there."
        )
    return items


def _ceiling_noise(summary: pd.DataFrame, above: pd.Series) -> str:
    """Why a config can measure above its ceiling: the ceiling's own repeats and their spread."""
    spread = pd.to_numeric(summary.get("ceiling_tps_spread_median", pd.Series(dtype=float)), errors="coerce")
    widest = spread[above].max() if len(spread) else float("nan")
    if _num(widest) is None:
        return (
            "The ceiling was measured once per job (results before schema version 4) and is noisier "
            "than the workers' median over iterations: read these as at the ceiling, not beyond it."
        )
    excess = pd.to_numeric(summary.loc[above, "harness_efficiency_median"], errors="coerce") - 1.0
    within = bool((excess <= spread[above].fillna(0.0)).all())
    text = (
        "The ceiling is the median of a few runs interleaved with each job's iterations; those runs "
        f"spread up to {_fmt(widest, 'pct')} (largest - smallest, of their median) on these configurations"
    )
    if within:
        return text + ", more than the excess: read these as at the ceiling, not beyond it."
    return (
        text + ", less than the excess of some: their workers outran the single-connection loop by more "
        "than its noise; still, read these as at the ceiling, not beyond it."
    )
