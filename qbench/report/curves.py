"""Summary rows grouped into curves over workers, each with its fitted lines where a fit is ok."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from qbench.report.plots import _Curve, _fitted_lines, _num

# Summary columns that are statistics, not config: a curve is every row
# sharing the remaining (config) columns except workers, per host.
_STAT_NAMES = frozenset({"config_id", "host", "workers", "iterations", "jobs", "noisy"})
_STAT_SUFFIXES = ("_median", "_mean", "_stdev", "_ci_low", "_ci_high", "_cv", "_total")


def _norm(value: Any) -> str:
    """A config value as a comparable string: NaN and None alike, 4.0 as 4."""
    if isinstance(value, str | bool | np.bool_):
        return str(bool(value)) if isinstance(value, np.bool_) else str(value)
    x = _num(value)
    return "" if x is None else str(int(x)) if x.is_integer() else repr(x)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [] if frame.empty else [dict(r) for r in frame.to_dict("records")]


def _config_columns(summary: pd.DataFrame) -> list[str]:
    """The summary's config columns (not statistics, not host)."""
    return [c for c in summary.columns if c not in _STAT_NAMES and not str(c).endswith(_STAT_SUFFIXES)]


def _curves(
    summary: pd.DataFrame, scaling: pd.DataFrame, fitted_points: pd.DataFrame | None = None
) -> tuple[list[_Curve], int]:
    """Group summary rows into curves over workers; also count groups with one worker level.

    When some curve has two worker levels or more, the single-level groups are drawn too (as
    points); when none has, there is no curve to draw and the list is empty. A fitted line is
    kept only for a model whose fit status is ok.
    """
    cols = ["host", *_config_columns(summary)]
    positions: dict[tuple[str, ...], list[int]] = {}
    for i, row in enumerate(summary[cols].itertuples(index=False, name=None)):
        positions.setdefault(tuple(_norm(v) for v in row), []).append(i)
    groups = [summary.iloc[positions[key]].sort_values("workers") for key in sorted(positions)]
    multi = [g for g in groups if g["workers"].nunique() >= 2]
    drawn = groups if multi else []
    varying = [c for c in cols if len({_norm(g[c].iloc[0]) for g in drawn}) > 1]
    fits = _records(scaling)
    # Each fit by its values of the curve columns it has: one look-up per curve, not a scan.
    fit_cols = [c for c in cols if fits and c in fits[0]]
    by_key: dict[tuple[str, ...], dict[str, Any]] = {}
    for f in fits:
        by_key.setdefault(tuple(_norm(f[c]) for c in fit_cols), f)
    curves = []
    for g in drawn:
        first = g.iloc[0]
        fit = by_key.get(tuple(_norm(first[c]) for c in fit_cols))
        label = ", ".join(f"{c}={_norm(first[c])}" for c in varying)
        if not label:
            label = str(fit["label"]) if fit and _norm(fit.get("label")) else str(first["host"])
        lines = _fitted_lines(fitted_points, (fit or {}).get("curve_id"))
        fitted = {m: xy for m, xy in lines.items() if (fit or {}).get(f"{m}_status") == "ok"}
        curves.append(_Curve(label, g, fitted))
    return curves, len(groups) - len(multi)
