"""Tests for qbench.report: the Markdown/HTML report and its plots, from synthetic tables."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pandas as pd
import pytest

from qbench.report.curves import _curves
from qbench.report.document import write_report

HOST = "bench-1"
WORKERS = (1, 2, 4, 8)
# (lambda tasks/s, sigma, kappa) of the USL curve each journal mode follows exactly.
USL = {"wal": (1234.5, 0.05, 0.002), "delete": (410.0, 0.3, 0.02)}
SYNC_FACTOR = {"off": 1.3, "normal": 1.0, "full": 0.7}
THRESHOLDS = {"knee_fraction": 0.95, "busy_rate": 0.001, "cv": 0.10, "alpha": 0.05}
PLOTS = ("plot_throughput.png", "plot_efficiency.png", "plot_busy_rate.png", "plot_latency.png")
EVIDENCE = "Lock waits took 41% of the drain at 8 workers."
SIGMA, KAPPA, TIMES = (
    "\N{GREEK SMALL LETTER SIGMA}",
    "\N{GREEK SMALL LETTER KAPPA}",
    "\N{MULTIPLICATION SIGN}",
)
EN = "\N{EN DASH}"


def usl(n: float, lam: float, sigma: float, kappa: float) -> float:
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


def config(journal: str) -> dict[str, object]:
    return {
        "workload_kind": "backlog",
        "journal_mode": journal,
        "synchronous": "normal",
        "pool_kind": "per_worker",
        "pool_size": 0,
        "pool_ratio": math.nan,
        "executor_kind": "threads",
        "claim_tx": "immediate",
        "claim_batch": 1,
        "busy_policy": "native",
        "busy_timeout_ms": 5000,
        "service_kind": "sleep",
        "service_ms": 1.0,
        "tasks": 2000,
        "payload_bytes": 64,
        "history_rows": 0,
    }


def make_summary(synchronous: tuple[str, ...] = ("normal",)) -> pd.DataFrame:
    """Two journal modes (times each synchronous) at workers 1, 2, 4, 8, throughput on the USL curves."""
    busy = {"wal": 0.0001, "delete": 0.0008}  # wal stays below the 0.1% threshold up to 8 workers
    rows = []
    for (journal, coefficients), sync, w in itertools.product(USL.items(), synchronous, WORKERS):
        x, cv = SYNC_FACTOR[sync] * usl(w, *coefficients), 0.15 if journal == "delete" else 0.02
        rows.append(
            {
                "config_id": f"{journal}-{sync}-{w}",
                "host": HOST,
                **config(journal),
                "synchronous": sync,
                "workers": w,
                "iterations": 5,
                "jobs": 1,
                "throughput_tps_median": x,
                "throughput_tps_mean": x,
                "throughput_tps_stdev": cv * x,
                "throughput_tps_ci_low": 0.97 * x,
                "throughput_tps_ci_high": 1.03 * x,
                "throughput_tps_cv": cv,
                "noisy": cv > 0.1,
                "efficiency_tps_per_worker_median": x / w,
                "harness_efficiency_median": 0.9,
                "ceiling_tps_median": math.nan,
                "e2e_latency_p50_ms_median": 2000 * w / x,
                "e2e_latency_p95_ms_median": 3000 * w / x,
                "e2e_latency_p99_ms_median": 3500 * w / x,
                "claim_latency_p99_ms_median": 2.0 * w,
                "busy_rate_median": busy[journal] * w,
                "lock_wait_total_s_median": 0.1 * w,
                "pool_wait_total_s_median": 0.0,
                "cpu_util_cores_median": 0.8,
                "rss_peak_bytes_median": 5e7,
                "duration_s_median": 2000 / x,
                "tasks_lost_total": 0,
                "tasks_duplicated_total": 0,
            }
        )
    return pd.DataFrame(rows)


def make_scaling() -> pd.DataFrame:
    rows = []
    for journal, (lam, sigma, kappa) in USL.items():
        n_star = math.sqrt((1 - sigma) / kappa)
        row = {
            "curve_id": f"c-{journal}",
            "host": HOST,
            "label": f"journal_mode={journal}",
            **config(journal),
        }
        row |= {"points": 4, "workers_min": 1, "workers_max": 8}
        row |= {"usl_status": "ok", "usl_message": "", "usl_lambda": lam, "usl_lambda_se": 1.5}
        row |= {"usl_sigma": sigma, "usl_sigma_se": 0.004, "usl_kappa": kappa, "usl_kappa_se": 0.0003}
        row |= {
            "usl_r_squared": 0.9987,
            "usl_n_star": n_star,
            "usl_x_max_tps": usl(n_star, lam, sigma, kappa),
        }
        row |= {"amdahl_status": "poor_fit", "amdahl_message": "R² 0.62 below 0.8", "amdahl_lambda": lam}
        row |= {"amdahl_lambda_se": 9.0, "amdahl_sigma": sigma * 2, "amdahl_sigma_se": 0.05}
        row |= {"amdahl_kappa": 0.0, "amdahl_kappa_se": math.nan, "amdahl_r_squared": 0.62}
        row |= {"amdahl_n_star": math.inf, "amdahl_x_max_tps": lam / (sigma * 2)}
        rows.append(row)
    return pd.DataFrame(rows)


def make_recommendations(summary: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for journal in USL:
        curve = summary[summary["journal_mode"] == journal]
        best = curve.loc[curve["throughput_tps_median"].idxmax()]
        rows.append(
            {"host": HOST, "workload_kind": "backlog", "journal_mode": journal, "synchronous": "normal"}
            | {"best_workers": int(best["workers"]), "best_throughput_tps": best["throughput_tps_median"]}
            | {"best_throughput_ci_low": best["throughput_tps_ci_low"]}
            | {"best_throughput_ci_high": best["throughput_tps_ci_high"], "knee_workers": 4}
            | {"busy_onset_workers": 2 if journal == "delete" else None, "pool_kind": "per_worker"}
            | {"pool_connections": int(best["workers"]), "busy_policy": "native", "busy_timeout_ms": 5000}
            | {
                "claim_tx": "immediate",
                "claim_batch": 1,
                "e2e_latency_p99_ms": best["e2e_latency_p99_ms_median"],
            }
            | {"bottleneck": "write-lock serialization", "bottleneck_evidence": EVIDENCE}
            | {"confidence": "High: 5 iterations, CV 2%.", "config_id": best["config_id"]}
        )
    return pd.DataFrame(rows)


def make_comparisons() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"host": HOST, "key": "journal_mode", "value_a": "delete", "value_b": "wal"}
            | {
                "context": "workers=8, synchronous=normal",
                "throughput_a_tps": 700.0,
                "throughput_b_tps": 1750.0,
            }
            | {
                "ratio": 2.5,
                "ratio_ci_low": 2.31,
                "ratio_ci_high": 2.74,
                "p_value": 0.0079,
                "significant": True,
            }
        ]
    )


def report(out: Path, summary: pd.DataFrame | None = None, **kwargs: object) -> list[Path]:
    summary = make_summary() if summary is None else summary
    tables = {
        "scaling": make_scaling(),
        "recommendations": make_recommendations(summary),
        "comparisons": make_comparisons(),
    }
    tables |= {k: v for k, v in kwargs.items() if k in tables}
    options = {k: v for k, v in kwargs.items() if k not in tables}
    return write_report(out, summary, **tables, thresholds=THRESHOLDS, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("report")
    skipped = [("runs/broken/metrics.parquet", "schema version 0 is not <supported>")]
    return out, report(out, skipped=skipped, sources=["outputs/sweep-a"])


def test_writes_every_file_atomically(full: tuple[Path, list[Path]]) -> None:
    out, written = full
    names = {"report.md", "report.html", *PLOTS}
    assert {p.name for p in written} == names
    assert {p.name for p in out.iterdir()} == names  # no temp file left behind
    for name in PLOTS:
        assert (out / name).read_bytes().startswith(b"\x89PNG")


def test_markdown_carries_sections_and_input_numbers(full: tuple[Path, list[Path]]) -> None:
    md = (full[0] / "report.md").read_text()
    for heading in (
        "Key findings",
        "Configuration recommendations",
        "Bottlenecks identified",
        "Scaling fits",
    ):
        assert f"## {heading}" in md
    recommendations = make_recommendations(make_summary())
    wal = recommendations[recommendations["journal_mode"] == "wal"].iloc[0]
    assert f"best median throughput {wal['best_throughput_tps']:,.0f} tasks/s" in md
    assert f"(95% CI {wal['best_throughput_ci_low']:,.0f}{EN}{wal['best_throughput_ci_high']:,.0f})" in md
    assert "busy errors above 0.1% from 2 workers" in md
    assert "busy errors never above 0.1% up to 8 workers" in md
    assert EVIDENCE in md
    assert f"contention {SIGMA}=0.05, coherency {KAPPA}=0.002, predicted peak N*=21.8" in md
    assert f"journal_mode wal vs delete on {HOST}" in md
    assert f"2.5{TIMES} throughput (95% CI 2.31{EN}2.74), p=0.0079" in md
    assert "poor_fit: R² 0.62 below 0.8" in md
    assert "4 of 8 configurations are noisy" in md
    for name in PLOTS:
        assert f"]({name})" in md


def test_html_is_self_contained_and_escaped(full: tuple[Path, list[Path]]) -> None:
    page = (full[0] / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(PLOTS)
    assert "http://" not in page and "https://" not in page and 'src="plot_' not in page
    assert "<h2>Key findings</h2>" in page and "<table>" in page
    assert "schema version 0 is not &lt;supported&gt;" in page


def test_skipped_files_appear_in_both_reports(full: tuple[Path, list[Path]]) -> None:
    for name in ("report.md", "report.html"):
        text = (full[0] / name).read_text()
        assert "runs/broken/metrics.parquet" in text and "schema version 0 is not" in text
        assert "outputs/sweep-a" in text


def test_single_worker_count_skips_plots_and_says_why(tmp_path: Path) -> None:
    summary = make_summary()
    written = report(tmp_path, summary[summary["workers"] == 4].reset_index(drop=True))
    assert {p.name for p in written} == {"report.md", "report.html"}
    for name in ("report.md", "report.html"):
        text = (tmp_path / name).read_text()
        assert "measured at only one worker count (workers: 4), so there is no curve to draw" in text


def test_empty_tables_do_not_crash(tmp_path: Path) -> None:
    summary = make_summary()
    tables = {  # one without columns, two with columns but no rows
        "scaling": pd.DataFrame(),
        "recommendations": make_recommendations(summary).iloc[0:0],
        "comparisons": make_comparisons().iloc[0:0],
    }
    write_report(tmp_path, summary, **tables)
    md = (tmp_path / "report.md").read_text()
    assert "No recommendation was derived." in md and "No scaling curve was fitted." in md
    assert "## Comparisons" not in md and "Thresholds used: none were passed" in md
    assert (tmp_path / "plot_throughput.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_many_curves_are_labelled_by_what_varies(tmp_path: Path) -> None:
    summary = make_summary(synchronous=("off", "normal", "full"))
    write_report(tmp_path, summary, pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    md = (tmp_path / "report.md").read_text()
    assert "Median throughput against workers, 6 curve(s)" in md
    curves, single = _curves(summary, pd.DataFrame())
    assert single == 0
    assert {c.label for c in curves} == {
        f"journal_mode={j}, synchronous={s}" for j in USL for s in ("off", "normal", "full")
    }
    for name in PLOTS:
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")


def test_fit_without_peak_or_coefficients_says_so_instead_of_numbers(tmp_path: Path) -> None:
    summary = make_summary()
    scaling = make_scaling()
    scaling.loc[0, ["usl_kappa", "usl_n_star"]] = [0.0, math.inf]
    scaling.loc[1, ["usl_status", "usl_message"]] = ["too_few_points", "3 worker levels, 4 needed"]
    report(tmp_path, summary[summary["workers"] == 4].reset_index(drop=True), scaling=scaling)
    md = (tmp_path / "report.md").read_text()
    assert f"coherency {KAPPA}=0: no predicted peak." in md
    assert "USL fit for bench-1, journal_mode=delete: too_few_points (3 worker levels, 4 needed)." in md
    fit_rows = [line for line in md.splitlines() if line.startswith("| bench-1: journal_mode=delete | USL")]
    assert fit_rows == [
        f"| bench-1: journal_mode=delete | USL | 4 | 1{EN}8 |"
        + " — |" * 6
        + " too_few_points: 3 worker levels, 4 needed |"
    ]
