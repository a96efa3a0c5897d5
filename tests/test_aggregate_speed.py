"""The batched paths aggregation takes for speed give what the one-at-a-time paths give.

Bootstrap CIs and comparisons are computed for many samples at once; tables of one
schema are checked together; poor fits keep no coefficients in scaling.parquet.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats as scipy_stats

from qbench.analysis import stats
from qbench.analysis.pipeline import aggregate
from qbench.errors import ResultsError
from qbench.results.load import load_results, read_job_table

from .synthetic import config_columns, write_job


def samples(count: int, seed: int = 3) -> list[np.ndarray]:
    """Samples of 0 to 13 values: some with ties, some with a NaN, some all zero."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        x = rng.normal(100, 10, int(rng.integers(0, 14)))
        if i % 5 == 0:
            x = np.round(x / 10) * 10
        if i % 17 == 0 and x.size:
            x[0] = np.nan
        if i % 23 == 0:
            x = np.zeros(x.size)
        out.append(x)
    return out


def test_batched_bootstrap_cis_equal_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    data = samples(200)
    monkeypatch.setattr(stats, "_BLOCK", 3 * 500)  # blocks of 3 samples: the block seams are exercised
    batch = stats.bootstrap_median_cis(data, resamples=500)
    for x, row in zip(data, batch, strict=True):
        assert np.array_equal(np.array(stats.bootstrap_median_ci(x, resamples=500)), row, equal_nan=True)
    short = [i for i, x in enumerate(data) if np.isfinite(x).sum() < 3]
    assert short and np.isnan(batch[short]).all()


def test_batched_comparisons_equal_one_at_a_time_and_scipy() -> None:
    data = samples(150)
    pairs = [(data[i], data[(7 * i + 3) % 150]) for i in range(150)]
    many = stats.compare_many(pairs, resamples=400)
    for (a, b), got in zip(pairs, many, strict=True):
        assert got == stats.compare_samples(a, b, resamples=400) or np.isnan(got.ratio)
        xa, xb = a[np.isfinite(a)], b[np.isfinite(b)]
        if xa.size >= 2 and xb.size >= 2:
            # the p-value is scipy's for the pair alone (its exact or asymptotic choice per pair)
            assert got.p_value == scipy_stats.mannwhitneyu(xa, xb, alternative="two-sided").pvalue


@pytest.mark.parametrize("n", [3, 5, 10, 11])
def test_bootstrap_draws_from_sorted_data_are_statistically_the_same(n: int) -> None:
    # Drawing positions into the sorted data relabels the values, nothing else: the resample
    # medians follow the distribution the draws into the data as recorded gave before.
    rng = np.random.default_rng(n)
    for seed in range(5):
        x = rng.lognormal(7, 0.3, n)
        positions = stats._median_positions(n, 40_000, np.random.default_rng(seed))
        new = stats._resample_medians(np.sort(x)[None, :], positions)[0]
        draws = np.random.default_rng(seed + 100).integers(0, n, size=(40_000, n))
        old = np.median(x[draws], axis=1)
        assert scipy_stats.ks_2samp(new, old).statistic < 0.02
        # and the CI is a CI of the same data: both ends are resample medians, inside the data
        low, high = stats.bootstrap_median_ci(x, resamples=40_000, seed=seed)
        assert x.min() <= low <= np.median(x) <= high <= x.max()


def test_tables_checked_together_are_refused_alone_with_their_own_reason(tmp_path: Path) -> None:
    for workers in (1, 2, 4, 8):
        write_job(tmp_path / f"good{workers}", config_columns(workers=workers), [100.0 * workers] * 4)
    # Only warmup rows: every row passes the row-wise checks, the file does not.
    path = write_job(tmp_path / "warmup-only", config_columns(workers=3), [50.0, 51.0])
    table = pq.read_table(path)
    table = table.set_column(
        table.column_names.index("phase"), table.schema.field("phase"), pa.array(["warmup"] * 3)
    )
    path.unlink()
    pq.write_table(table, path)
    write_job(tmp_path / "negative", config_columns(workers=5), [10.0, -1.0, 12.0])
    shutil.copytree(tmp_path / "good2", tmp_path / "copy-of-good2")
    loaded = load_results([tmp_path])
    reasons = {Path(p).parent.name: r for p, r in loaded.skipped}
    for name in ("warmup-only", "negative"):
        with pytest.raises(ResultsError) as refused:
            read_job_table(tmp_path / name / "metrics.parquet")
        assert reasons[name] == str(refused.value)
    assert reasons["good2"].startswith("duplicate of") or reasons["copy-of-good2"].startswith("duplicate of")
    assert len(loaded.files) == 4
    assert sorted(loaded.frame["workers"].unique().tolist()) == [1, 2, 4, 8]


def test_poor_fits_store_no_coefficients(tmp_path: Path) -> None:
    # Throughput that does not follow worker count: both fits are poor.
    rng = np.random.default_rng(5)
    for workers, tps in {1: 1000.0, 2: 700.0, 3: 1300.0, 4: 800.0, 5: 1200.0, 6: 900.0}.items():
        write_job(
            tmp_path / str(workers), config_columns(workers=workers), list(tps * (1 + rng.normal(0, 0.2, 6)))
        )
    aggregate([tmp_path])
    table = pq.read_table(tmp_path / "scaling.parquet")
    [row] = table.to_pylist()
    for model in ("usl", "amdahl"):
        assert row[f"{model}_status"] == "poor_fit"
        assert row[f"{model}_r_squared"] is not None and row[f"{model}_r_squared"] < 0.8
        assert "poorly" in row[f"{model}_message"]
        for name in ("lambda", "lambda_se", "sigma", "sigma_se", "kappa", "kappa_se", "n_star", "x_max_tps"):
            assert table.column(f"{model}_{name}").null_count == 1, f"{model}_{name}"


def test_ok_fits_keep_their_coefficients(tmp_path: Path) -> None:
    for workers in (1, 2, 4, 8, 16):
        tps = 1000.0 * workers / (1 + 0.1 * (workers - 1) + 0.01 * workers * (workers - 1))
        write_job(
            tmp_path / str(workers), config_columns(workers=workers), [tps * f for f in (0.99, 1.0, 1.01)]
        )
    aggregate([tmp_path])
    [row] = pq.read_table(tmp_path / "scaling.parquet").to_pylist()
    assert row["usl_status"] == "ok"
    assert row["usl_kappa"] == pytest.approx(0.01, rel=0.05)
    assert row["usl_n_star"] == pytest.approx(np.sqrt(0.9 / 0.01), rel=0.05)
