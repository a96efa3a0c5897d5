"""The report: Markdown and self-contained HTML, with plots, from the analysis tables.

Every sentence is generated from the tables it summarises and carries its
figure; nothing here knows what the data "should" show. The document is
built once as a list of blocks and rendered twice, so the Markdown and the
HTML always say the same thing. Plots draw on a bare ``Figure`` with the
Agg canvas: no pyplot, no global backend state.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator, ScalarFormatter

from qbench.fits import usl_throughput

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
# Summary columns that are statistics, not config: a curve is every row
# sharing the remaining (config) columns except workers, per host.
_STAT_NAMES = frozenset({"config_id", "host", "workers", "iterations", "jobs", "noisy"})
_STAT_SUFFIXES = ("_median", "_mean", "_stdev", "_ci_low", "_ci_high", "_cv", "_total")
_FITTED = ("ok", "poor_fit")
_DPI = 110
_FIGSIZE = (8.0, 5.0)
# Log-scale the worker axis only when it spans this factor or more.
_LOG_X_SPAN = 20.0
_MAX_PANELS = 12
_DASH = "—"
_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.45;color:#222}table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}"
    "th,td{border:1px solid #bbb;padding:.25rem .5rem;text-align:left}th{background:#eee}"
    "img{max-width:100%}figcaption{font-style:italic;margin-bottom:1.5rem}"
)


@dataclass(frozen=True)
class _Heading:
    level: int
    text: str


@dataclass(frozen=True)
class _Para:
    text: str


@dataclass(frozen=True)
class _Bullets:
    items: list[str]


@dataclass(frozen=True)
class _Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class _Image:
    name: str
    caption: str
    png: bytes


_Block = _Heading | _Para | _Bullets | _Table | _Image


@dataclass(frozen=True)
class _Curve:
    host: str
    label: str
    rows: pd.DataFrame  # summary rows of this curve, sorted by workers
    fit: Mapping[str, Any] | None  # the matching scaling row, if any


def write_report(
    out_dir: Path,
    summary: pd.DataFrame,
    scaling: pd.DataFrame,
    recommendations: pd.DataFrame,
    comparisons: pd.DataFrame,
    *,
    skipped: Sequence[tuple[str, str]] = (),
    sources: Sequence[str] = (),
    thresholds: Mapping[str, float] | None = None,
) -> list[Path]:
    """Write report.md, report.html (self-contained: PNGs embedded as base64 data URIs, inline CSS, no external links) and the PNG plots into out_dir; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    th = dict(thresholds or {})
    curves, single = _curves(summary, scaling)
    images, plot_notes = _plots(curves, single, summary, th)
    blocks: list[_Block] = [
        *_overview(summary, skipped, sources),
        _Heading(2, "Key findings"),
        _Bullets(_findings(summary, scaling, recommendations, comparisons, th)),
        *_recommendation_section(recommendations),
        *_bottleneck_section(recommendations),
        *_scaling_section(scaling),
        *_comparison_section(comparisons),
        _Heading(2, "Plots"),
        *[_Para(note) for note in plot_notes],
        *images,
        *_method_section(th),
    ]
    written = [_write_atomic(out_dir / image.name, image.png) for image in images]
    written.append(_write_atomic(out_dir / REPORT_MD, _markdown(blocks).encode()))
    written.append(_write_atomic(out_dir / REPORT_HTML, _html(blocks).encode()))
    return written


def _write_atomic(path: Path, data: bytes) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --- formatting -------------------------------------------------------------


def _num(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _norm(value: Any) -> str:
    """A config value as a comparable string: NaN and None alike, 4.0 as 4."""
    x = _num(value) if not isinstance(value, str | bool) else None
    if x is None:
        return str(value) if isinstance(value, str | bool) else ""
    return str(int(x)) if x.is_integer() else repr(x)


def _tps(value: Any) -> str:
    x = _num(value)
    return _DASH if x is None else f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _sig(value: Any, digits: int = 3) -> str:
    x = _num(value)
    if x is None:
        return _DASH
    return "∞" if math.isinf(x) else f"{x:.{digits}g}"


def _ms(value: Any) -> str:
    x = _num(value)
    return _DASH if x is None else f"{x:,.1f}"


def _int(value: Any) -> str:
    x = _num(value)
    return _DASH if x is None else f"{round(x):,}"


def _pct(value: Any) -> str:
    x = _num(value)
    return _DASH if x is None else f"{100 * x:.3g}%"


def _p(value: Any) -> str:
    x = _num(value)
    return _DASH if x is None else "<0.001" if x < 0.001 else f"{x:.2g}"


def _ci(low: Any, high: Any, fmt: Any = _tps) -> str:
    if _num(low) is None or _num(high) is None:
        return ""
    return f"{fmt(low)}–{fmt(high)}"


def _pm(value: Any, se: Any) -> str:
    return _sig(value) + (f" ± {_sig(se, 2)}" if _num(se) is not None and _num(value) is not None else "")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [] if frame.empty else [dict(r) for r in frame.to_dict("records")]


# --- curves -----------------------------------------------------------------


def _config_columns(summary: pd.DataFrame) -> list[str]:
    return [c for c in summary.columns if c not in _STAT_NAMES and not str(c).endswith(_STAT_SUFFIXES)]


def _curves(summary: pd.DataFrame, scaling: pd.DataFrame) -> tuple[list[_Curve], int]:
    """Group summary rows into curves over workers; also count groups with one worker level."""
    cols = ["host", *_config_columns(summary)]
    keys = summary[cols].map(_norm).apply(tuple, axis=1)
    groups = [g.sort_values("workers") for _, g in summary.groupby(keys, sort=True)]
    drawn = [g for g in groups if g["workers"].nunique() >= 2]
    varying = [c for c in cols if len({_norm(g[c].iloc[0]) for g in drawn}) > 1]
    fits = _records(scaling)
    curves = []
    for g in drawn:
        first = g.iloc[0]
        fit = next((f for f in fits if _matches(f, first, cols)), None)
        label = ", ".join(f"{c}={_norm(first[c])}" for c in varying)
        if not label:
            label = str(fit["label"]) if fit and _norm(fit.get("label")) else str(first["host"])
        curves.append(_Curve(str(first["host"]), label, g, fit))
    return curves, len(groups) - len(drawn)


def _matches(fit: Mapping[str, Any], row: pd.Series, cols: list[str]) -> bool:
    return all(_norm(fit[c]) == _norm(row[c]) for c in cols if c in fit)


# --- sections ---------------------------------------------------------------


def _overview(
    summary: pd.DataFrame, skipped: Sequence[tuple[str, str]], sources: Sequence[str]
) -> list[_Block]:
    hosts = sorted({str(h) for h in summary["host"]})
    counts = (
        f"{len(summary):,} configurations on {len(hosts)} host{'s' * (len(hosts) != 1)} ({', '.join(hosts)})"
    )
    if "iterations" in summary:
        counts += f", {_int(summary['iterations'].sum())} measured iterations"
    if "jobs" in summary:
        counts += f" from {_int(summary['jobs'].sum())} jobs"
    blocks: list[_Block] = [_Heading(1, "qbench report: SQLite job queue benchmark"), _Para(counts + ".")]
    if sources:
        blocks += [
            _Para(f"Results aggregated from {len(sources)} director{'ies' if len(sources) != 1 else 'y'}:")
        ]
        blocks += [_Bullets(list(sources))]
    if skipped:
        blocks += [_Para(f"{len(skipped)} result file{'s' * (len(skipped) != 1)} left out:")]
        blocks += [_Bullets([f"{path}: {reason}" for path, reason in skipped])]
    return blocks


def _findings(
    summary: pd.DataFrame,
    scaling: pd.DataFrame,
    recommendations: pd.DataFrame,
    comparisons: pd.DataFrame,
    th: Mapping[str, float],
) -> list[str]:
    items = [_recommendation_finding(r, summary, th) for r in _records(recommendations)]
    for fit in _records(scaling):
        items.append(_fit_finding(fit))
    items += _comparison_findings(comparisons, th)
    if "noisy" in summary:
        noisy = summary.loc[summary["noisy"].fillna(False).astype(bool), "config_id"].astype(str).tolist()
        cv = (
            f"throughput CV above {_pct(th['cv'])}"
            if "cv" in th
            else "throughput CV above the noise threshold"
        )
        items.append(
            f"{len(noisy)} of {len(summary)} configurations are noisy ({cv})"
            + (f": {', '.join(noisy[:5])}{' …' * (len(noisy) > 5)}." if noisy else ".")
        )
    lost = summary.get("tasks_lost_total", pd.Series(dtype=float)).sum()
    dup = summary.get("tasks_duplicated_total", pd.Series(dtype=float)).sum()
    items.append(f"Tasks lost: {_int(lost)}; tasks processed twice: {_int(dup)}, over all configurations.")
    return items


def _recommendation_finding(r: Mapping[str, Any], summary: pd.DataFrame, th: Mapping[str, float]) -> str:
    text = (
        f"On {r.get('host')}, {r.get('workload_kind')} workload, {r.get('journal_mode')}/{r.get('synchronous')}: "
        f"best median throughput {_tps(r.get('best_throughput_tps'))} tasks/s"
    )
    ci = _ci(r.get("best_throughput_ci_low"), r.get("best_throughput_ci_high"))
    text += f" (95% CI {ci})" if ci else ""
    text += f" at {_int(r.get('best_workers'))} workers"
    if _num(r.get("knee_workers")) is not None:
        within = f"within {_pct(th['knee_fraction'])} of it" if "knee_fraction" in th else "at the knee"
        text += f"; {within} from {_int(r.get('knee_workers'))} workers"
    above = f"above {_pct(th['busy_rate'])}" if "busy_rate" in th else "above the threshold"
    if _num(r.get("busy_onset_workers")) is not None:
        return text + f"; busy errors {above} from {_int(r.get('busy_onset_workers'))} workers."
    same = summary
    for col in ("host", "workload_kind", "journal_mode", "synchronous"):
        if col in same and col in r:
            same = same[same[col].map(_norm) == _norm(r[col])]
    upto = f" up to {_int(same['workers'].max())} workers" if len(same) else ""
    return text + f"; busy errors never {above}{upto}."


def _fit_finding(fit: Mapping[str, Any]) -> str:
    where = f"{fit.get('host')}, {fit.get('label')}"
    usl_status, amd_status = str(fit.get("usl_status")), str(fit.get("amdahl_status"))
    if usl_status == "ok":
        text = (
            f"USL fit for {where} (R² {_sig(fit.get('usl_r_squared'))}): "
            f"contention σ={_sig(fit.get('usl_sigma'))}, coherency κ={_sig(fit.get('usl_kappa'))}, "
        )
        n_star = _num(fit.get("usl_n_star"))
        if n_star is None or math.isinf(n_star):
            return text + "no peak: κ=0."
        return text + f"predicted peak N*={_sig(n_star)} at {_tps(fit.get('usl_x_max_tps'))} tasks/s."
    text = f"USL fit for {where}: {usl_status} ({fit.get('usl_message') or 'no message'})"
    if amd_status == "ok":
        text += (
            f"; Amdahl fit (R² {_sig(fit.get('amdahl_r_squared'))}): "
            f"contention σ={_sig(fit.get('amdahl_sigma'))}"
        )
    return text + "."


def _comparison_findings(comparisons: pd.DataFrame, th: Mapping[str, float]) -> list[str]:
    rows = _records(comparisons)
    significant = [r for r in rows if bool(r.get("significant"))]
    items = [
        f"{r.get('key')} {r.get('value_b')} vs {r.get('value_a')} on {r.get('host')} ({r.get('context')}): "
        f"{_sig(r.get('ratio'))}× throughput (95% CI {_ci(r.get('ratio_ci_low'), r.get('ratio_ci_high'), _sig) or _DASH}), "
        f"p={_p(r.get('p_value'))}."
        for r in significant
    ]
    if len(significant) < len(rows):
        alpha = f" at α={_sig(th['alpha'])}" if "alpha" in th else ""
        items.append(f"{len(rows) - len(significant)} of {len(rows)} comparisons are not significant{alpha}.")
    return items


def _recommendation_section(recommendations: pd.DataFrame) -> list[_Block]:
    headers = ["Host", "Workload", "Journal", "Synchronous", "Best workers", "Best tasks/s (95% CI)"]
    headers += ["Knee workers", "Busy onset workers", "Pool", "Busy handling", "Claim", "E2E p99 (ms)"]
    rows = []
    for r in _records(recommendations):
        ci = _ci(r.get("best_throughput_ci_low"), r.get("best_throughput_ci_high"))
        onset = r.get("busy_onset_workers")
        rows.append(
            [str(r.get(k)) for k in ("host", "workload_kind", "journal_mode", "synchronous")]
            + [_int(r.get("best_workers")), _tps(r.get("best_throughput_tps")) + (f" ({ci})" if ci else "")]
            + [_int(r.get("knee_workers")), "never" if _num(onset) is None else _int(onset)]
            + [f"{r.get('pool_kind')}, {_int(r.get('pool_connections'))} connections"]
            + [f"{r.get('busy_policy')}, timeout {_int(r.get('busy_timeout_ms'))} ms"]
            + [f"{r.get('claim_tx')}, batch {_int(r.get('claim_batch'))}", _ms(r.get("e2e_latency_p99_ms"))]
        )
    body: list[_Block] = [_Table(headers, rows)] if rows else [_Para("No recommendation was derived.")]
    return [_Heading(2, "Configuration recommendations"), *body]


def _bottleneck_section(recommendations: pd.DataFrame) -> list[_Block]:
    items = [
        f"{r.get('host')}, {r.get('workload_kind')}, {r.get('journal_mode')}/{r.get('synchronous')}: "
        f"{r.get('bottleneck')}. {r.get('bottleneck_evidence')} Confidence: {r.get('confidence')}"
        for r in _records(recommendations)
    ]
    body: list[_Block] = [_Bullets(items)] if items else [_Para("No recommendation, so no bottleneck named.")]
    return [_Heading(2, "Bottlenecks identified"), *body]


def _scaling_section(scaling: pd.DataFrame) -> list[_Block]:
    headers = [
        "Curve",
        "Model",
        "Points",
        "Workers",
        "λ (tasks/s)",
        "σ",
        "κ",
        "R²",
        "N*",
        "Peak tasks/s",
        "Status",
    ]
    rows = []
    for f in _records(scaling):
        for model in ("usl", "amdahl"):
            status = str(f.get(f"{model}_status"))
            message = f.get(f"{model}_message")
            rows.append(
                [
                    f"{f.get('host')}: {f.get('label')}",
                    "USL" if model == "usl" else "Amdahl",
                    _int(f.get("points")),
                ]
                + [f"{_int(f.get('workers_min'))}–{_int(f.get('workers_max'))}"]
                + [_pm(f.get(f"{model}_{p}"), f.get(f"{model}_{p}_se")) for p in ("lambda", "sigma", "kappa")]
                + [_sig(f.get(f"{model}_r_squared")), _sig(f.get(f"{model}_n_star"))]
                + [
                    _tps(f.get(f"{model}_x_max_tps")),
                    status + (f": {message}" if status != "ok" and message else ""),
                ]
            )
    body: list[_Block] = [_Table(headers, rows)] if rows else [_Para("No scaling curve was fitted.")]
    return [_Heading(2, "Scaling fits"), *body]


def _comparison_section(comparisons: pd.DataFrame) -> list[_Block]:
    headers = [
        "Host",
        "Key",
        "A",
        "B",
        "Context",
        "A tasks/s",
        "B tasks/s",
        "B/A (95% CI)",
        "p",
        "Significant",
    ]
    rows = [
        [str(r.get(k)) for k in ("host", "key", "value_a", "value_b", "context")]
        + [_tps(r.get("throughput_a_tps")), _tps(r.get("throughput_b_tps"))]
        + [
            _sig(r.get("ratio"))
            + (f" ({ci})" if (ci := _ci(r.get("ratio_ci_low"), r.get("ratio_ci_high"), _sig)) else "")
        ]
        + [_p(r.get("p_value")), "yes" if bool(r.get("significant")) else "no"]
        for r in _records(comparisons)
    ]
    return [_Heading(2, "Comparisons"), _Table(headers, rows)] if rows else []


def _method_section(th: Mapping[str, float]) -> list[_Block]:
    used = ", ".join(f"{k}={v:g}" for k, v in th.items()) or "none were passed to the report"
    return [
        _Heading(2, "Method"),
        _Para(
            "Every figure is the median over the measured iterations of a configuration; warmup iterations "
            "are excluded. Intervals are 95% bootstrap confidence intervals of the median (none below 3 "
            "iterations). A configuration is flagged noisy when the coefficient of variation of its "
            "throughput exceeds the cv threshold. Comparisons use the Mann-Whitney U rank test on the "
            "iterations, the effect is the ratio of medians. Scaling fits are nonlinear least squares of "
            "the Universal Scalability Law and of Amdahl's law (κ=0). Thresholds used: " + used + "."
        ),
    ]


# --- plots ------------------------------------------------------------------


def _plots(
    curves: list[_Curve], single: int, summary: pd.DataFrame, th: Mapping[str, float]
) -> tuple[list[_Image], list[str]]:
    if not curves:
        levels = ", ".join(_int(w) for w in sorted(summary["workers"].dropna().unique()))
        return [], [
            "The throughput, efficiency, busy-rate and latency plots are skipped: every configuration was "
            f"measured at only one worker count (workers: {levels}), so there is no curve to draw."
        ]
    notes = [f"{single} configuration(s) measured at one worker count only are not drawn."] if single else []
    n = len(curves)
    specs = [
        ("throughput", "throughput_tps_median", _throughput_plot),
        ("efficiency", "efficiency_tps_per_worker_median", _efficiency_plot),
        ("busy_rate", "busy_rate_median", _busy_plot),
        ("latency", "e2e_latency_p99_ms_median", _latency_plot),
    ]
    captions = {
        "throughput": f"Median throughput against workers, {n} curve(s); bars are 95% bootstrap CIs, solid "
        "lines the fitted USL (dashed: Amdahl) where a fit exists, thin lines otherwise join the medians.",
        "efficiency": f"Median throughput per worker against workers, {n} curve(s).",
        "busy_rate": f"Median busy-error rate against workers, {n} curve(s)"
        + (f"; the horizontal line is the {_pct(th['busy_rate'])} threshold." if "busy_rate" in th else "."),
        "latency": f"Median end-to-end latency percentiles (p50, p95, p99) against workers, {n} curve(s).",
    }
    images = []
    for name, column, draw in specs:
        if all(c.rows.get(column, pd.Series(dtype=float)).isna().all() for c in curves):
            notes.append(f"The {name.replace('_', ' ')} plot is skipped: no configuration reports {column}.")
            continue
        images.append(_Image(f"plot_{name}.png", captions[name], draw(curves, th)))
    return images, notes


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = _FIGSIZE) -> tuple[Figure, Any]:
    fig = Figure(figsize=size, dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _png(fig: Figure) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _colour(i: int, n: int) -> Any:
    return colormaps["tab10" if n <= 10 else "tab20"](i % 20)


def _workers_axis(ax: Axes, curves: list[_Curve]) -> None:
    levels = sorted({float(w) for c in curves for w in c.rows["workers"]})
    if levels[0] > 0 and levels[-1] / levels[0] >= _LOG_X_SPAN:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_locator(NullLocator())
    if len(levels) <= 12:
        ax.set_xticks(levels, [_int(w) for w in levels])
    else:
        ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("workers (concurrent claimers)")
    ax.grid(True, alpha=0.3)


def _legend(ax: Axes, n_entries: int, handles: list[Any] | None = None) -> None:
    outside = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0)} if n_entries > 6 else {"loc": "best"}
    ax.legend(handles=handles, fontsize="small", **outside) if handles else ax.legend(
        fontsize="small", **outside
    )


def _throughput_plot(curves: list[_Curve], th: Mapping[str, float]) -> bytes:
    fig, axes = _figure()
    ax = axes[0][0]
    styles = {"usl": "-", "amdahl": "--"} if len(curves) <= 3 else {"usl": "-"}
    drawn: set[str] = set()
    for i, c in enumerate(curves):
        colour, x = _colour(i, len(curves)), c.rows["workers"].to_numpy(float)
        y = c.rows["throughput_tps_median"].to_numpy(float)
        low = np.nan_to_num(y - c.rows.get("throughput_tps_ci_low", np.nan), nan=0.0).clip(0)
        high = np.nan_to_num(c.rows.get("throughput_tps_ci_high", np.nan) - y, nan=0.0).clip(0)
        ax.errorbar(x, y, yerr=[low, high], fmt="o", color=colour, capsize=3, label=c.label)
        grid = np.linspace(x.min(), x.max(), 200)
        fitted = False
        for model, style in styles.items():
            f = c.fit or {}
            lam, sigma = _num(f.get(f"{model}_lambda")), _num(f.get(f"{model}_sigma"))
            kappa = _num(f.get(f"{model}_kappa")) or 0.0
            if str(f.get(f"{model}_status")) in _FITTED and lam is not None and sigma is not None:
                ax.plot(grid, usl_throughput(grid, lam, sigma, kappa), style, color=colour, lw=1.3)
                fitted = True
                drawn.add(model)
        if not fitted:
            ax.plot(x, y, "-", color=colour, lw=0.8, alpha=0.6)
    proxies = [Line2D([], [], color="grey", ls=styles[m], label=f"{m.upper()} fit") for m in sorted(drawn)]
    handles = ax.get_legend_handles_labels()[0] + proxies
    ax.set_ylabel("throughput (tasks/s, median)")
    ax.set_ylim(bottom=0)
    ax.set_title("Throughput against workers")
    _workers_axis(ax, curves)
    _legend(ax, len(handles), handles)
    return _png(fig)


def _series_plot(
    curves: list[_Curve], column: str, scale: float, ylabel: str, title: str
) -> tuple[Figure, Axes]:
    fig, axes = _figure()
    ax = axes[0][0]
    for i, c in enumerate(curves):
        y = c.rows.get(column, pd.Series(np.nan, index=c.rows.index)).to_numpy(float) * scale
        ax.plot(c.rows["workers"].to_numpy(float), y, "o-", color=_colour(i, len(curves)), label=c.label)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    _workers_axis(ax, curves)
    return fig, ax


def _efficiency_plot(curves: list[_Curve], th: Mapping[str, float]) -> bytes:
    fig, ax = _series_plot(
        curves,
        "efficiency_tps_per_worker_median",
        1.0,
        "throughput per worker (tasks/s/worker)",
        "Efficiency",
    )
    _legend(ax, len(curves))
    return _png(fig)


def _busy_plot(curves: list[_Curve], th: Mapping[str, float]) -> bytes:
    fig, ax = _series_plot(
        curves,
        "busy_rate_median",
        100.0,
        "busy errors (% of transactions)",
        "Busy-error rate against workers",
    )
    if "busy_rate" in th:
        ax.axhline(
            100 * th["busy_rate"], color="black", ls=":", lw=1, label=f"threshold {_pct(th['busy_rate'])}"
        )
    _legend(ax, len(curves) + 1)
    return _png(fig)


def _latency_plot(curves: list[_Curve], th: Mapping[str, float]) -> bytes:
    percentiles = (("p50", "-"), ("p95", "--"), ("p99", ":"))
    shown = curves[:_MAX_PANELS]
    one_panel = len(curves) <= 4
    ncols = 1 if one_panel else min(3, len(shown))
    nrows = 1 if one_panel else math.ceil(len(shown) / ncols)
    fig, axes = _figure(nrows, ncols, _FIGSIZE if one_panel else (4.0 * ncols, 3.2 * nrows))
    for i, c in enumerate(shown):
        ax = axes[0][0] if one_panel else axes[i // ncols][i % ncols]
        for p, style in percentiles:
            y = c.rows.get(f"e2e_latency_{p}_ms_median", pd.Series(np.nan, index=c.rows.index))
            label = f"{c.label} {p}" if one_panel else p
            colour = _colour(i, len(curves)) if one_panel else "black"
            ax.plot(
                c.rows["workers"].to_numpy(float),
                y.to_numpy(float),
                style,
                marker="o",
                ms=3,
                color=colour,
                label=label,
            )
        ax.set_ylabel("end-to-end latency (ms)")
        _workers_axis(ax, [c])
        if not one_panel:
            ax.set_title(c.label, fontsize="small")
            ax.legend(fontsize="x-small")
    for j in range(len(shown), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    if one_panel:
        axes[0][0].set_title("End-to-end latency against workers")
        _legend(axes[0][0], 3 * len(curves))
    return _png(fig)


# --- rendering --------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(blocks: list[_Block]) -> str:
    out: list[str] = []
    for b in blocks:
        match b:
            case _Heading(level, text):
                out.append(f"{'#' * level} {text}")
            case _Para(text):
                out.append(text)
            case _Bullets(items):
                out.append("\n".join(f"- {item}" for item in items))
            case _Table(headers, rows):
                lines = ["| " + " | ".join(map(_md_cell, headers)) + " |", "|" + " --- |" * len(headers)]
                out.append("\n".join(lines + ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]))
            case _Image(name, caption, _):
                out.append(f"![{caption}]({name})\n\n*{caption}*")
    return "\n\n".join(out) + "\n"


def _html(blocks: list[_Block]) -> str:
    e = html.escape
    out: list[str] = []
    for b in blocks:
        match b:
            case _Heading(level, text):
                out.append(f"<h{level}>{e(text)}</h{level}>")
            case _Para(text):
                out.append(f"<p>{e(text)}</p>")
            case _Bullets(items):
                out.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in items) + "</ul>")
            case _Table(headers, rows):
                head = "".join(f"<th>{e(h)}</th>" for h in headers)
                body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            case _Image(_, caption, png):
                data = base64.b64encode(png).decode("ascii")
                out.append(
                    f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{e(caption)}</figcaption></figure>"
                )
    title = next((b.text for b in blocks if isinstance(b, _Heading)), "qbench report")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n"
    )
