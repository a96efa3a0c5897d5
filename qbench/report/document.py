"""The report: Markdown and self-contained HTML, with plots, from the analysis tables.

Every sentence is generated from the tables it summarises and carries its
figure; nothing here knows what the data "should" show. Each section is
written once into a :class:`~qbench.report.markup.Doc` that renders Markdown
and HTML side by side, so both always say the same thing. The PNG plots are drawn in
:mod:`qbench.report.plots`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qbench.report.curves import _curves, _norm, _records
from qbench.report.findings import _health_findings
from qbench.report.hosts import hosts_section
from qbench.report.markup import Doc
from qbench.report.plots import _DASH, Row, _fmt, _num, _plots
from qbench.report.tiers import base_rows, sustainable_section, tiers_section
from qbench.report.words import (
    method_paragraphs,
    name_by,
    p_phrase,
    plural,
    setting_columns,
)
from qbench.results.machine import HostFacts
from qbench.results.writer import write_bytes

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
# Only an ok fit has coefficients worth reading; a poor one keeps its status and R².
_FITTED = ("ok",)
# A coefficient this close to its upper bound 1 was stopped by the bound, not fitted.
_AT_BOUND = 1.0 - 1e-6
_EN, _TIMES = "\N{EN DASH}", "\N{MULTIPLICATION SIGN}"
_SIGMA, _KAPPA = "\N{GREEK SMALL LETTER SIGMA}", "\N{GREEK SMALL LETTER KAPPA}"
_LAMBDA, _ALPHA = "\N{GREEK SMALL LETTER LAMDA}", "\N{GREEK SMALL LETTER ALPHA}"


def write_report(
    out_dir: Path,
    summary: pd.DataFrame,
    scaling: pd.DataFrame,
    recommendations: pd.DataFrame,
    comparisons: pd.DataFrame,
    *,
    skipped: Sequence[tuple[str, str]] = (),
    jobs: Sequence[tuple[str, str]] = (),
    sources: Sequence[str] = (),
    thresholds: Mapping[str, float] | None = None,
    fitted_points: pd.DataFrame | None = None,
    sustainable: pd.DataFrame | None = None,
    notes: Sequence[str] = (),
    hosts: Mapping[str, HostFacts] | None = None,
) -> list[Path]:
    """Write report.md, report.html and the PNG plots into out_dir; return the paths written.

    report.html is self-contained: PNGs embedded as base64 data URIs, inline
    CSS, no external links. A plot with nothing to draw is skipped and the
    report says why. ``fitted_points`` (curve_id, model, workers, throughput_tps)
    are drawn as each curve's fitted lines; a curve without them joins its medians.
    ``jobs`` (path, reason) are the jobs that failed or never finished: listed with the
    reasons they recorded, before the other files left out (``skipped``, which may repeat them).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    th = dict(thresholds or {})
    curves, single = _curves(summary, scaling, fitted_points)
    plots, plot_notes = _plots(curves, single, summary, th)
    # one row per group here (the development tier's, which holds the recommended config)
    recs = base_rows(_records(recommendations))
    fits, comps = _fit_rows(scaling), _records(comparisons)
    setting = setting_columns(recs)
    doc = Doc()
    _overview(doc, summary, skipped, sources, jobs)
    for note in notes:  # a plan's skipped stages and why
        doc.para(note)
    doc.heading(2, "Key findings")
    doc.bullets(_key_findings(recs, summary, scaling, comps, th, setting))
    doc.heading(2, "Configuration recommendations")
    doc.table([_recommendation_cells(r, setting) for r in recs], "No recommendation was derived.")
    hosts_section(doc, recs, summary, hosts or {}, setting)  # only with more than one host
    tiers_section(doc, recommendations, th)
    sustainable_section(doc, sustainable)
    doc.heading(2, "Bottlenecks identified")
    doc.bullets([_bottleneck(r, setting) for r in recs] or ["No recommendation, so no bottleneck is named."])
    doc.heading(2, "Scaling fits")
    doc.table([_fit_cells(f) for f in fits], "No scaling curve was fitted.")
    if comps:
        doc.heading(2, "Comparisons")
        doc.table([_comparison_cells(c) for c in comps], "")
    doc.heading(2, "Plots")
    for note in plot_notes:
        doc.para(note)
    for plot in plots:
        doc.image(plot.name, plot.caption, plot.png)
    _method(doc, th)
    written = [write_bytes(out_dir / p.name, p.png) for p in plots]
    md, html = doc.markdown().encode(), doc.page().encode()
    return [*written, write_bytes(out_dir / REPORT_MD, md), write_bytes(out_dir / REPORT_HTML, html)]


def _key_findings(
    recs: Sequence[Row],
    summary: pd.DataFrame,
    scaling: pd.DataFrame,
    comps: Sequence[Row],
    th: Mapping[str, float],
    setting: Sequence[str],
) -> list[str]:
    """The recommendations, busy onsets, fits, comparisons and health, one bullet each."""
    return (
        [_recommendation_finding(r, summary, th, setting) for r in recs]
        + [item for r in recs for item in _busy_findings(r, setting)]
        + [_fit_finding(f) for f in _records(scaling)]
        + _comparison_findings(comps, th)
        + _health_findings(summary, th)
    )


# --- values ---------------------------------------------------------------------


def _flag(value: Any) -> bool:
    """A boolean cell; missing (None, NaN, NA) counts as false."""
    return isinstance(value, bool | np.bool_) and bool(value)


def _ci(low: Any, high: Any, kind: str = "tps") -> str:
    return "" if _num(low) is None or _num(high) is None else f"{_fmt(low, kind)}{_EN}{_fmt(high, kind)}"


def _with_ci(r: Row, key: str, ci_prefix: str, kind: str) -> str:
    ci = _ci(r.get(f"{ci_prefix}_ci_low"), r.get(f"{ci_prefix}_ci_high"), kind)
    return _fmt(r.get(key), kind) + (f" ({ci})" if ci else "")


def _pm(r: Row, key: str, kind: str = "sig") -> str:
    se = f" ± {_fmt(r.get(key + '_se'), 'se')}" if _num(r.get(key + "_se")) is not None else ""
    return _fmt(r.get(key), kind) + (se if _num(r.get(key)) is not None else "")


def _fit_rows(scaling: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per curve and model, the model prefix stripped from its columns."""
    rows = []
    for fit in _records(scaling):
        for model, name in (("usl", "USL"), ("amdahl", "Amdahl")):
            own = {k.removeprefix(f"{model}_"): v for k, v in fit.items() if k.startswith(f"{model}_")}
            rows.append(fit | own | {"model": name})
    return rows


def _status(r: Row) -> str:
    status, message = str(r.get("status")), r.get("message")
    return status + (f": {message}" if status != "ok" and isinstance(message, str) and message else "")


def _where(r: Row, setting: Sequence[str]) -> str:
    where = f"{r.get('host')}, {r.get('workload_kind')}, {r.get('journal_mode')}/{r.get('synchronous')}"
    return where + (f", {name_by(r, setting)}" if setting else "")


def _recommended(r: Row) -> str:
    """The recommended worker count with its bootstrap stability; the best one in older tables."""
    workers = r.get("recommended_workers", r.get("best_workers"))
    stability = _num(r.get("workers_stability"))
    share = f" ({_fmt(stability, 'pct')} of resamples)" if stability is not None else ""
    return _fmt(workers, "int") + share


def _recommendation_cells(r: Row, setting: Sequence[str] = ()) -> dict[str, str]:
    onset = r.get("busy_onset_workers")
    cells = {
        "Host": str(r.get("host")),
        "Workload": str(r.get("workload_kind")),
        "Journal": str(r.get("journal_mode")),
        "Synchronous": str(r.get("synchronous")),
    }
    if setting:
        cells["Setting"] = name_by(r, setting)
    return cells | {
        "Recommended workers (stability)": _recommended(r),
        "Tasks/s there (95% CI)": _with_ci(r, "recommended_throughput_tps", "recommended_throughput", "tps"),
        "Best median workers": _fmt(r.get("best_workers"), "int"),
        "Best tasks/s (95% CI)": _with_ci(r, "best_throughput_tps", "best_throughput", "tps"),
        "Knee workers": _fmt(r.get("knee_workers"), "int"),
        "Busy onset workers": _fmt(onset, "int") if _num(onset) is not None else _never(r),
        "Pool": f"{r.get('pool_kind')}, {plural(r.get('pool_connections'), 'connection')}",
        "Busy handling": f"{r.get('busy_policy')}, timeout {_fmt(r.get('busy_timeout_ms'), 'int')} ms",
        "Busy timeout from lock waits": _fmt(r.get("busy_timeout_recommended_ms"), "int") + " ms"
        if _num(r.get("busy_timeout_recommended_ms")) is not None
        else _DASH,
        "Claim": f"{r.get('claim_tx')}, batch {_fmt(r.get('claim_batch'), 'int')}",
        "E2E p99 (ms)": _fmt(r.get("e2e_latency_p99_ms"), "ms"),
    }


def _coefficient(r: Row, key: str, kind: str = "sig") -> str:
    """A coefficient with its standard error, flagged when its upper bound 1 stopped it."""
    text = _pm(r, key, kind)
    value = _num(r.get(key))
    return text + " (at bound 1)" if key != "lambda" and value is not None and value >= _AT_BOUND else text


def _fit_cells(r: Row) -> dict[str, str]:
    fitted = r.get("status") in _FITTED  # other statuses carry no coefficients worth printing
    cells = {
        "Curve": f"{r.get('host')}: {r.get('label')}",
        "Model": str(r.get("model")),
        "Points": _fmt(r.get("points"), "int"),
        "Workers": _ci(r.get("workers_min"), r.get("workers_max"), "int") or _DASH,
    }
    coefficients = {
        f"{_LAMBDA} (tasks/s)": _coefficient(r, "lambda", "tps"),
        _SIGMA: _coefficient(r, "sigma"),
        _KAPPA: _coefficient(r, "kappa"),
        "R²": _fmt(r.get("r_squared")),
        "N*": _fmt(r.get("n_star")),
        "Peak tasks/s": _fmt(r.get("x_max_tps"), "tps"),
    }
    # A poor fit keeps its R² (how poor); every other number of a fit that is not ok is a dash.
    kept = {"R²"} if r.get("status") == "poor_fit" else set()
    shown = {k: v if fitted or k in kept else _DASH for k, v in coefficients.items()}
    return cells | shown | {"Status": _status(r)}


def _comparison_cells(r: Row) -> dict[str, str]:
    return {
        "Host": str(r.get("host")),
        "Key": str(r.get("key")),
        "A": str(r.get("value_a")),
        "B": str(r.get("value_b")),
        "Context": str(r.get("context")),
        "A tasks/s": _fmt(r.get("throughput_a_tps"), "tps"),
        "B tasks/s": _fmt(r.get("throughput_b_tps"), "tps"),
        "B/A (95% CI)": _with_ci(r, "ratio", "ratio", "sig"),
        "p": _fmt(r.get("p_value"), "p"),
        "Significant": "yes" if _flag(r.get("significant")) else "no",
    }


# --- sentences ------------------------------------------------------------------


def _overview(
    doc: Doc,
    summary: pd.DataFrame,
    skipped: Sequence[tuple[str, str]],
    sources: Sequence[str],
    jobs: Sequence[tuple[str, str]] = (),
) -> None:
    hosts = sorted({str(h) for h in summary["host"]})
    text = f"{plural(len(summary), 'configuration')} on {plural(len(hosts), 'host')} ({', '.join(hosts)})"
    if "iterations" in summary:
        text += f", {_fmt(summary['iterations'].sum(), 'int')} measured iterations"
    if "jobs" in summary:
        text += f" from {plural(summary['jobs'].sum(), 'job')}"
    doc.heading(1, "qbench report: SQLite job queue benchmark")
    doc.para(text + ".")
    if sources:
        doc.para(f"Results aggregated from {len(sources)} director{'ies' if len(sources) != 1 else 'y'}:")
        doc.bullets(list(sources))
    if jobs:
        doc.para(f"{plural(len(jobs), 'job')} failed or did not finish; nothing of them is counted:")
        doc.bullets([f"{path}: {reason}" for path, reason in jobs])
    listed = {tuple(job) for job in jobs}
    files = [entry for entry in skipped if tuple(entry) not in listed]
    if files:
        doc.para(f"{plural(len(files), 'result file')} left out:")
        doc.bullets([f"{path}: {reason}" for path, reason in files])


def _recommended_phrase(r: Row) -> str:
    """The stable-knee recommendation in words, or '' for tables written before it."""
    if _num(r.get("recommended_workers")) is None:
        return ""
    ci = _ci(r.get("recommended_throughput_ci_low"), r.get("recommended_throughput_ci_high"))
    text = f"recommended {plural(r.get('recommended_workers'), 'worker')}, "
    text += f"{_fmt(r.get('recommended_throughput_tps'), 'tps')} tasks/s" + (f" (95% CI {ci})" if ci else "")
    text += ", the fewest workers not significantly slower than the best"
    stability = _num(r.get("workers_stability"))
    if stability is not None:
        text += f"; {_fmt(stability, 'pct')} of bootstrap resamples of the iterations pick the same count"
    return text + "; "


def _recommendation_finding(
    r: Row, summary: pd.DataFrame, th: Mapping[str, float], setting: Sequence[str] = ()
) -> str:
    where = (
        f"{r.get('host')}, {r.get('workload_kind')} workload, {r.get('journal_mode')}/{r.get('synchronous')}"
    )
    where += f", {name_by(r, setting)}" if setting else ""
    ci = _ci(r.get("best_throughput_ci_low"), r.get("best_throughput_ci_high"))
    text = f"On {where}: {_recommended_phrase(r)}"
    text += f"best median throughput {_fmt(r.get('best_throughput_tps'), 'tps')} tasks/s"
    text += (f" (95% CI {ci})" if ci else "") + f" at {plural(r.get('best_workers'), 'worker')}"
    if _num(r.get("knee_workers")) is not None:
        knee = f"within {_fmt(th['knee_fraction'], 'pct')} of it from" if "knee_fraction" in th else "knee at"
        text += f"; {knee} {plural(r.get('knee_workers'), 'worker')}"
    above = f"above {_fmt(th['busy_rate'], 'pct')}" if "busy_rate" in th else "above the threshold"
    if _num(r.get("busy_onset_workers")) is not None:
        return text + f"; busy errors {above} from {plural(r.get('busy_onset_workers'), 'worker')}."
    same = summary
    for col in ("host", "workload_kind", "journal_mode", "synchronous"):
        if col in same and col in r:
            same = same[same[col].map(_norm) == _norm(r[col])]
    tried = r.get("busy_onset_tried_workers", same["workers"].max() if len(same) else None)
    upto = f" up to {plural(tried, 'worker')}, the largest count tried" if _num(tried) is not None else ""
    return text + f"; busy errors never {above}{upto}."


def _fit_finding(fit: Row) -> str:
    where = f"{fit.get('host')}, {fit.get('label')}"
    if fit.get("usl_status") == "ok":
        text = (
            f"USL fit for {where} (R² {_fmt(fit.get('usl_r_squared'))}): contention {_SIGMA}="
            f"{_fmt(fit.get('usl_sigma'))}, coherency {_KAPPA}={_fmt(fit.get('usl_kappa'))}"
        )
        n_star = _num(fit.get("usl_n_star"))
        if n_star is None or math.isinf(n_star):
            return text + ": no predicted peak."
        return (
            text + f", predicted peak N*={_fmt(n_star)} at {_fmt(fit.get('usl_x_max_tps'), 'tps')} tasks/s."
        )
    text = f"USL fit for {where}: {fit.get('usl_status')} ({fit.get('usl_message') or 'no message'})"
    if fit.get("amdahl_status") == "ok":
        text += f"; Amdahl fit (R² {_fmt(fit.get('amdahl_r_squared'))}): contention {_SIGMA}="
        text += _fmt(fit.get("amdahl_sigma"))
    return text + "."


def _comparison_findings(comparisons: Sequence[Row], th: Mapping[str, float]) -> list[str]:
    significant = [r for r in comparisons if _flag(r.get("significant"))]
    items = []
    for r in significant:
        ci = _ci(r.get("ratio_ci_low"), r.get("ratio_ci_high"), "sig") or _DASH
        where = f"on {r.get('host')} ({r.get('context')})"
        items.append(
            f"{r.get('key')} {r.get('value_b')} vs {r.get('value_a')} {where}: "
            f"{_fmt(r.get('ratio'))}{_TIMES} throughput (95% CI {ci}), {p_phrase(r.get('p_value'))}."
        )
    if (rest := len(comparisons) - len(significant)) > 0:
        alpha = f" at {_ALPHA}={_fmt(th['alpha'])}" if "alpha" in th else ""
        verb = "is" if rest == 1 else "are"
        items.append(f"{rest} of {plural(len(comparisons), 'comparison')} {verb} not significant{alpha}.")
    return items


def _never(r: Row) -> str:
    """'never', with the largest worker count tried when the table has it."""
    tried = r.get("busy_onset_tried_workers")
    return f"never up to {_fmt(tried, 'int')}" if _num(tried) is not None else "never"


def _busy_findings(r: Row, setting: Sequence[str] = ()) -> list[str]:
    """Where busy errors begin per busy timeout, and the busy timeout the lock waits ask for."""
    items = []
    by_timeout = r.get("busy_onset_by_timeout")
    if isinstance(by_timeout, str) and by_timeout:
        items.append(f"{_where(r, setting)}: busy errors per busy timeout: {by_timeout}.")
    evidence = r.get("busy_timeout_evidence")
    if isinstance(evidence, str) and evidence:
        items.append(f"{_where(r, setting)}: busy timeout from the measured lock waits: {evidence}.")
    return items


def _bottleneck(r: Row, setting: Sequence[str] = ()) -> str:
    evidence = str(r.get("bottleneck_evidence") or "").rstrip(".")
    confidence = str(r.get("confidence") or "").rstrip(".")
    advice = str(r.get("bottleneck_advice") or "").rstrip(".")
    advice = f" Advice: {advice}." if advice and advice != "nan" else ""
    return f"{_where(r, setting)}: {r.get('bottleneck')}: {evidence}.{advice} Confidence: {confidence}."


def _method(doc: Doc, th: Mapping[str, float]) -> None:
    used = ", ".join(f"{k}={v:g}" for k, v in th.items()) or "none were passed to the report"
    doc.heading(2, "Method")
    for text in method_paragraphs():
        doc.para(text)
    doc.para(f"Thresholds used: {used}.")
