"""The report's PNG plots, drawn from the summary curves and the fitted points the analysis computed.

Plots draw on a bare ``Figure`` with the Agg canvas: no pyplot, no global
backend state. This module also holds the few primitives report.py shares
with it (the curve type, number formatting), so imports run one way only.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator
from numpy.typing import NDArray

Row = Mapping[str, Any]
FloatArray = NDArray[np.float64]

_DPI = 110
_FIGSIZE = (8.0, 5.0)
_LOG_X_SPAN = 20.0  # log-scale the worker axis only when it spans this factor
# log-scale the value axis when the curves' peaks lie this factor apart: on a linear axis from 0
# the lower curve would fill a fifth of the height or less, its shape unreadable
_LOG_Y_SPAN = 5.0
_MAX_PANELS = 12
# Curves drawn on one plot at most (one tab10 colour each); the others are named in a note.
_MAX_CURVES = 10
_DASH = "\N{EM DASH}"
_FORMATS: dict[str, Callable[[float], str]] = {
    "tps": lambda x: f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}",
    "sig": lambda x: f"{x:.3g}",
    "se": lambda x: f"{x:.2g}",
    "ms": lambda x: f"{x:,.1f}",
    "int": lambda x: f"{round(x):,}",
    "pct": lambda x: f"{100 * x:.3g}%",
    "p": lambda x: "<0.001" if x < 0.001 else f"{x:.2g}",
}


@dataclass(frozen=True)
class _Curve:
    label: str
    rows: pd.DataFrame  # summary rows of this curve, sorted by workers
    # model ("usl", "amdahl") -> (workers, throughput) along its fitted curve, where one is drawn
    fitted: Mapping[str, tuple[FloatArray, FloatArray]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Plot:
    name: str
    caption: str
    png: bytes


def _num(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _fmt(value: Any, kind: str = "sig") -> str:
    x = _num(value)
    return _DASH if x is None else "\N{INFINITY}" if math.isinf(x) else _FORMATS[kind](x)


def _fitted_lines(points: pd.DataFrame | None, curve_id: Any) -> dict[str, tuple[FloatArray, FloatArray]]:
    """One curve's fitted points (columns curve_id, model, workers, throughput_tps), by model."""
    if points is None or points.empty or curve_id is None:
        return {}
    own = points[points["curve_id"] == curve_id]
    return {
        str(model): (group["workers"].to_numpy(float), group["throughput_tps"].to_numpy(float))
        for model, group in own.groupby("model", sort=False)
    }


# --- plots ----------------------------------------------------------------------


def _plots(
    curves: list[_Curve], single: int, summary: pd.DataFrame, th: Mapping[str, float]
) -> tuple[list[_Plot], list[str]]:
    """Draw each plot that has data; return the plots and notes on those skipped."""
    if not curves:
        levels = ", ".join(_fmt(w, "int") for w in sorted(summary["workers"].dropna().unique()))
        return [], [
            "The throughput, efficiency, busy-rate and latency plots are skipped: every configuration was "
            f"measured at only one worker count (workers: {levels}), so there is no curve to draw."
        ]
    notes = []
    if single:
        many = "configuration" if single == 1 else "configurations"
        notes.append(f"{single} {many} measured at one worker count only are drawn as single points.")
    if len(curves) > _MAX_CURVES:
        notes.append(
            f"The plots draw the {_MAX_CURVES} of the {len(curves)} curves with the highest median "
            "throughput (more cannot be told apart on one plot); every curve's figures are in the "
            "scaling fits table above and in summary.parquet."
        )
        curves = _top_curves(curves)
    n, busy = len(curves), th.get("busy_rate")
    line = f"; the dotted line is the {_fmt(busy, 'pct')} threshold." if busy is not None else "."
    shown = f"; the first {_MAX_PANELS} are shown." if n > _MAX_PANELS else "."
    specs = (
        ("throughput", "throughput_tps_median", f"Median throughput against workers, {n} curve(s); bars are "
         "95% bootstrap CIs, solid lines the fitted USL (dashed: Amdahl) where the fit is ok (R² ≥ 0.8), "
         "thin lines otherwise join the medians; no line is drawn for a poor fit."),
        ("efficiency", "efficiency_tps_per_worker_median",
         f"Median throughput per worker against workers, {n} curve(s); bars are the throughput CIs divided "
         "by the workers."),
        ("busy_rate", "busy_rate_median", f"Median busy-error rate (busy errors per transaction) against "
         f"workers, {n} curve(s); bars are distribution-free 95% CIs of the median (order statistics){line}"),
        ("latency", "e2e_latency_p99_ms_median", "Median end-to-end latency percentiles (p50, p95, p99) "
         "against workers; bars on p99 are distribution-free 95% CIs of its median (order statistics), "
         f"{n} curve(s){shown}"),
    )  # fmt: skip
    plots = []
    for name, column, caption in specs:
        if all(c.rows.get(column, pd.Series(dtype=float)).isna().all() for c in curves):
            notes.append(f"The {name.replace('_', ' ')} plot is skipped: no configuration reports {column}.")
        else:
            plots.append(_Plot(f"plot_{name}.png", caption, _png(_DRAW[name](curves, busy))))
    return plots, notes


def _top_curves(curves: list[_Curve]) -> list[_Curve]:
    """The :data:`_MAX_CURVES` curves with the highest median throughput, in their order."""
    peak = [np.nanmax(_column(c, "throughput_tps_median"), initial=-np.inf) for c in curves]
    keep = sorted(sorted(range(len(curves)), key=lambda i: -peak[i])[:_MAX_CURVES])
    return [curves[i] for i in keep]


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = _FIGSIZE) -> tuple[Figure, Any]:
    fig = Figure(figsize=size, dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _colour(i: int, n: int) -> Any:
    return colormaps["tab10" if n <= 10 else "tab20"](i % 20)


def _column(c: _Curve, name: str) -> Any:
    return c.rows.get(name, pd.Series(np.nan, index=c.rows.index)).to_numpy(float)


def _axes(ax: Axes, curves: list[_Curve], ylabel: str, title: str, extra: Sequence[Line2D] = ()) -> None:
    """Scales, ticks, labels and the legend (always outside the data, right of the axes)."""
    levels = sorted({float(w) for c in curves for w in c.rows["workers"].dropna()})
    xlabel = "workers (concurrency)"
    if levels[0] > 0 and levels[-1] / levels[0] >= _LOG_X_SPAN:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_locator(NullLocator())
        xlabel = "workers (concurrency, log scale: the axis does not start at 0)"
    else:
        ax.set_xlim(left=0, right=levels[-1] * 1.05 if levels[-1] > 0 else None)
    if len(levels) <= 12:
        ax.set_xticks(levels, [_fmt(w, "int") for w in levels])
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 1000 else f"{v:g}"))
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, alpha=0.3)
    handles = [*ax.get_legend_handles_labels()[0], *extra]
    ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))


def _y_axis(ax: Axes, curves: list[_Curve], column: str, scale: float, ylabel: str) -> str:
    """A log value axis when the curves' peaks are :data:`_LOG_Y_SPAN` times apart or more (a linear
    one flattens the lower curves against 0), else a linear one from 0; the label to use."""
    peaks = [float(np.nanmax(y)) for c in curves if np.isfinite(y := _column(c, column) * scale).any()]
    positive = [p for p in peaks if p > 0]
    if len(positive) >= 2 and max(positive) / min(positive) >= _LOG_Y_SPAN and min(peaks) > 0:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_locator(NullLocator())
        return f"{ylabel.removesuffix(')')}; log scale, not from 0)"
    ax.set_ylim(bottom=0)
    return ylabel


def _bars(c: _Curve, column: str, scale: float = 1.0) -> tuple[Any, Any]:
    """Error bars (below, above) of a curve's median from its ``*_ci_low``/``*_ci_high`` columns."""
    stem = column.removesuffix("_median")
    y = _column(c, column) * scale
    low = np.nan_to_num(y - _column(c, f"{stem}_ci_low") * scale, nan=0.0).clip(0)
    high = np.nan_to_num(_column(c, f"{stem}_ci_high") * scale - y, nan=0.0).clip(0)
    return low, high


def _throughput_plot(curves: list[_Curve], busy_threshold: float | None) -> Figure:
    fig, axes = _figure()
    ax: Axes = axes[0][0]
    styles = {"usl": "-", "amdahl": "--"} if len(curves) <= 3 else {"usl": "-"}
    drawn: set[str] = set()
    for i, c in enumerate(curves):
        colour, x, y = _colour(i, len(curves)), _column(c, "workers"), _column(c, "throughput_tps_median")
        ax.errorbar(
            x, y, yerr=_bars(c, "throughput_tps_median"), fmt="o", color=colour, capsize=3, label=c.label
        )
        lines = [model for model in styles if model in c.fitted]
        for model in lines:
            ax.plot(*c.fitted[model], styles[model], color=colour, lw=1.3)
        drawn.update(lines)
        if not lines:
            ax.plot(x, y, "-", color=colour, lw=0.8, alpha=0.6)
    names = {"usl": "USL fit", "amdahl": "Amdahl fit"}
    proxies = [
        Line2D([], [], color="grey", ls=styles[m], label=names[m]) for m in sorted(drawn, reverse=True)
    ]
    ylabel = _y_axis(ax, curves, "throughput_tps_median", 1.0, "throughput (tasks/s, median)")
    _axes(ax, curves, ylabel, "Throughput against workers", proxies)
    return fig


def _line_plot(
    curves: list[_Curve],
    column: str,
    scale: float,
    ylabel: str,
    title: str,
    threshold: float | None,
    log_ok: bool = True,
) -> Figure:
    fig, axes = _figure()
    ax: Axes = axes[0][0]
    for i, c in enumerate(curves):
        # efficiency's interval is the throughput's divided by the workers
        bars = _efficiency_bars(c) if column.startswith("efficiency") else _bars(c, column, scale)
        y = _column(c, column) * scale
        colour = _colour(i, len(curves))
        ax.errorbar(_column(c, "workers"), y, yerr=bars, fmt="o-", color=colour, capsize=3, label=c.label)
    if threshold is not None:
        label = f"threshold {_fmt(threshold, 'pct')}"
        ax.axhline(threshold * scale, color="black", ls=":", lw=1, label=label)
    if log_ok:
        ylabel = _y_axis(ax, curves, column, scale, ylabel)
    else:
        ax.set_ylim(bottom=0)
    _axes(ax, curves, ylabel, title)
    return fig


def _efficiency_bars(c: _Curve) -> tuple[Any, Any]:
    workers = _column(c, "workers")
    y = _column(c, "efficiency_tps_per_worker_median")
    low = np.nan_to_num(y - _column(c, "throughput_tps_ci_low") / workers, nan=0.0).clip(0)
    high = np.nan_to_num(_column(c, "throughput_tps_ci_high") / workers - y, nan=0.0).clip(0)
    return low, high


def _latency_plot(curves: list[_Curve], busy_threshold: float | None) -> Figure:
    shown, one_panel = curves[:_MAX_PANELS], len(curves) <= 4
    ncols = 1 if one_panel else min(3, len(shown))
    nrows = 1 if one_panel else math.ceil(len(shown) / ncols)
    fig, axes = _figure(nrows, ncols, _FIGSIZE if one_panel else (4.2 * ncols, 3.2 * nrows))
    for i, c in enumerate(shown):
        ax: Axes = axes[0][0] if one_panel else axes[i // ncols][i % ncols]
        colour = _colour(i, len(curves)) if one_panel else "black"
        for p, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
            label = f"{c.label} {p}" if one_panel else p
            y = _column(c, f"e2e_latency_{p}_ms_median")
            bars = _bars(c, "e2e_latency_p99_ms_median") if p == "p99" else None
            ax.errorbar(_column(c, "workers"), y, yerr=bars, fmt=style, marker="o", ms=3, color=colour,
                        capsize=2, label=label)  # fmt: skip
        if not one_panel:
            ax.set_ylim(bottom=0)
            _axes(ax, [c], "end-to-end latency (ms)", c.label)
            ax.title.set_fontsize("small")
    for j in range(len(shown), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    if one_panel:
        ylabel = _y_axis(axes[0][0], curves, "e2e_latency_p99_ms_median", 1.0, "end-to-end latency (ms)")
        _axes(axes[0][0], curves, ylabel, "End-to-end latency against workers")
    else:
        fig.tight_layout()
    return fig


def _efficiency_plot(curves: list[_Curve], busy_threshold: float | None) -> Figure:
    ylabel = "throughput per worker (tasks/s/worker)"
    return _line_plot(
        curves, "efficiency_tps_per_worker_median", 1.0, ylabel, "Efficiency against workers", None
    )


def _busy_plot(curves: list[_Curve], busy_threshold: float | None) -> Figure:
    ylabel, title = "busy errors (% of transactions)", "Busy-error rate against workers"
    # busy rates are often 0, which a log axis cannot show
    return _line_plot(curves, "busy_rate_median", 100.0, ylabel, title, busy_threshold, log_ok=False)


_DRAW: dict[str, Callable[[list[_Curve], float | None], Figure]] = {
    "throughput": _throughput_plot,
    "efficiency": _efficiency_plot,
    "busy_rate": _busy_plot,
    "latency": _latency_plot,
}
