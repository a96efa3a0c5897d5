"""Scaling curves: throughput against workers, every other config value fixed; USL and Amdahl fits.

:func:`scaling_table` fits both models to each curve; :func:`fitted_points`
evaluates the fits along each curve, so the report draws them as data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from qbench.analysis.fits import FitStatus, ScalingFit, fit_both, usl_throughput

MODELS = ("usl", "amdahl")
# Fits whose curves are drawn: only an ok fit. A poor fit drawn as a line reads as a model
# of the data; its points are drawn, joined, instead.
DRAWN_STATUSES = (FitStatus.OK,)
# Points along each drawn curve: smooth at the report's plot resolution.
FITTED_POINTS = 200
FITTED_COLUMNS = ["curve_id", "model", "workers", "throughput_tps"]


def curve_columns(summary: pd.DataFrame, keys: list[str]) -> list[str]:
    """The key columns that define a curve: all but ``workers``."""
    return [k for k in keys if k != "workers" and k in summary.columns]


def curve_label(fixed: dict[str, object], varying: list[str]) -> str:
    if not varying:
        return "all configs"
    return ", ".join(f"{k}={fixed[k]}" for k in varying)


def varying_columns(table: pd.DataFrame, columns: list[str]) -> list[str]:
    """Columns whose value differs between rows (what tells curves apart)."""
    return [c for c in columns if table[c].astype(str).nunique(dropna=False) > 1]


def _fit_columns(prefix: str, fit: ScalingFit) -> dict[str, object]:
    """One model's columns. Only an ok fit stores its coefficients, N* and peak; any other keeps
    its status, message and R² (how poor a poor fit is), the rest null, so no reader of
    scaling.parquet takes a poor fit's numbers for a model of the data."""
    ok = fit.status == FitStatus.OK

    def num(value: float | None, *, kept: bool = False) -> float:
        return float("nan") if value is None or not (ok or kept) else float(value)

    return {
        f"{prefix}_status": str(fit.status),
        f"{prefix}_message": fit.message,
        f"{prefix}_lambda": num(fit.lam),
        f"{prefix}_lambda_se": num(fit.lam_se),
        f"{prefix}_sigma": num(fit.sigma),
        f"{prefix}_sigma_se": num(fit.sigma_se),
        f"{prefix}_kappa": num(fit.kappa),
        f"{prefix}_kappa_se": num(fit.kappa_se),
        f"{prefix}_r_squared": num(fit.r_squared, kept=True),
        f"{prefix}_n_star": num(fit.n_star),
        f"{prefix}_x_max_tps": num(fit.x_max),
    }


def scaling_table(frame: pd.DataFrame, summary: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per curve, both models fitted on every measured iteration of the curve."""
    columns = curve_columns(summary, keys)
    if summary.empty:
        return pd.DataFrame()
    data = frame[frame["phase"] == "measure"]
    curves = summary[columns].drop_duplicates()
    label_columns = varying_columns(curves, columns)
    rows = []
    for number, (values, group) in enumerate(data.groupby(columns, dropna=False, sort=True)):
        fixed = dict(zip(columns, values, strict=True))
        n = group["workers"].to_numpy(dtype=float)
        x = group["throughput_tps"].to_numpy(dtype=float)
        keep = [math.isfinite(v) for v in x]
        n, x = n[keep], x[keep]
        row: dict[str, object] = {"curve_id": f"c{number}", **fixed}
        row.update(
            label=curve_label(fixed, label_columns),
            points=len(set(n.tolist())),
            iterations=len(n),
            workers_min=int(n.min()) if len(n) else 0,
            workers_max=int(n.max()) if len(n) else 0,
        )
        usl, amdahl = fit_both(n.tolist(), x.tolist())
        row.update(_fit_columns("usl", usl))
        row.update(_fit_columns("amdahl", amdahl))
        rows.append(row)
    return pd.DataFrame(rows)


def _number(value: Any) -> float | None:
    """A coefficient from the scaling table; None when missing (None, NaN) or not a number."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _match_key(values: tuple[object, ...]) -> tuple[object, ...]:
    """Values compared as pandas' ``==`` compares them (4 == 4.0), missing values all alike."""

    def one(v: object) -> object:
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            return ("missing",)
        if isinstance(v, bool | np.bool_):
            return ("flag", bool(v))
        if isinstance(v, int | float | np.integer | np.floating):
            return ("number", float(v))
        return ("text", str(v))

    return tuple(one(v) for v in values)


def fitted_points(summary: pd.DataFrame, scaling: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Points along each fitted curve, for the plots: curve_id, model, workers, throughput_tps.

    :data:`FITTED_POINTS` per curve and model, evenly spaced from the fewest to
    the most workers the summary holds on the curve; only for fits with
    coefficients worth drawing (:data:`DRAWN_STATUSES`).
    """
    if summary.empty or scaling.empty:
        return pd.DataFrame(columns=FITTED_COLUMNS)
    columns = curve_columns(summary, keys)
    # Each curve's worker counts by its key values (as same_config matches them): one pass.
    levels: dict[tuple[object, ...], list[float]] = {}
    for values, workers in zip(
        summary[columns].itertuples(index=False, name=None), summary["workers"].tolist(), strict=True
    ):
        levels.setdefault(_match_key(values), []).append(float(workers))
    frames = []
    for _, fit in scaling.iterrows():
        workers = np.asarray(levels.get(_match_key(tuple(fit[c] for c in columns)), []), dtype=float)
        if workers.size == 0:
            continue
        grid = np.linspace(workers.min(), workers.max(), FITTED_POINTS)
        for model in MODELS:
            lam, sigma = _number(fit.get(f"{model}_lambda")), _number(fit.get(f"{model}_sigma"))
            if fit.get(f"{model}_status") not in DRAWN_STATUSES or lam is None or sigma is None:
                continue
            kappa = _number(fit.get(f"{model}_kappa")) or 0.0  # Amdahl: no coherency term
            throughput = usl_throughput(grid, lam, sigma, kappa)
            frames.append(
                pd.DataFrame(
                    {
                        "curve_id": fit["curve_id"],
                        "model": model,
                        "workers": grid,
                        "throughput_tps": throughput,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=FITTED_COLUMNS)
