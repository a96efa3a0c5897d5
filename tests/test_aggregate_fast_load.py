"""The faster aggregation paths give what the plain ones gave: files read a batch ahead, the
bootstrap CIs a slice of configs at a time, same_config narrowing positions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qbench.analysis import comparisons, summary
from qbench.analysis.stats import bootstrap_median_cis, compare_many
from qbench.analysis.summary import _median_cis, same_config
from qbench.analysis.thresholds import Thresholds
from qbench.results import load
from qbench.results.load import load_results
from tests.synthetic import config_columns, write_job


def _sweep(root: Path) -> None:
    """Seven jobs, one a corrupt file and one a copy of another job, in a known order."""
    for n in range(5):
        write_job(root / f"{n:02d}", config_columns(workers=n + 1), [100.0 + n, 101.0 + n, 99.0 + n])
    (root / "05").mkdir()
    (root / "05" / "metrics.parquet").write_bytes(b"PAR1 not parquet at all")
    (root / "06").mkdir()
    (root / "06" / "metrics.parquet").write_bytes((root / "01" / "metrics.parquet").read_bytes())


@pytest.mark.parametrize("batch", [1, 2, 3, 50])
def test_reading_ahead_in_batches_counts_and_refuses_as_one_batch_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    _sweep(tmp_path)
    monkeypatch.setattr(load, "READ_BATCH", 1000)
    whole = load_results([tmp_path])
    monkeypatch.setattr(load, "READ_BATCH", batch)
    batched = load_results([tmp_path])
    assert [p.parent.name for p in batched.files] == ["00", "01", "02", "03", "04"]
    pd.testing.assert_frame_equal(batched.frame, whole.frame)
    assert batched.skipped == whole.skipped
    assert [Path(p).parent.name for p, _ in batched.unreadable] == ["05"]
    assert "not a readable Parquet file" in batched.unreadable[0][1]
    assert [Path(p).parent.name for p, _ in batched.duplicates] == ["06"]


def test_bootstrap_cis_by_slices_equal_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summary, "CI_SLICE", 7)
    rng = np.random.default_rng(3)
    samples = [rng.normal(100.0, 5.0, size=int(rng.integers(1, 12))) for _ in range(40)]
    samples[4] = np.array([np.nan, 1.0, 2.0, 3.0, np.inf])
    one_call = bootstrap_median_cis(samples, resamples=300)
    assert np.isnan(one_call).any() and np.isfinite(one_call).any()
    np.testing.assert_array_equal(_median_cis(samples, 300), one_call)
    assert _median_cis([], 300).shape == (0, 2)


def _same_config_key_by_key(table: pd.DataFrame, row: pd.Series, keys: list[str]) -> pd.DataFrame:
    """same_config as it was first written: the whole table filtered key by key."""
    for key in keys:
        if key in table.columns:
            column = table[key]
            table = table[(column == row[key]) | (column.isna() & pd.isna(row[key]))]
    return table


def test_same_config_matches_filtering_key_by_key() -> None:
    table = pd.DataFrame(
        {
            "host": ["a", "a", "b", "a", "a", "a"],
            "target": [None, "x", None, None, "x", None],
            "size": [1.0, 1.0, 1.0, np.nan, np.nan, 1.0],
            "workers": [1, 2, 1, 4, 8, 16],
        },
        index=[10, 11, 12, 13, 14, 15],
    )
    keys = ["host", "target", "size", "not_a_column"]
    for position in range(len(table)):
        row = table.iloc[position]
        expected = _same_config_key_by_key(table, row, keys)
        got = same_config(table, row, keys)
        pd.testing.assert_frame_equal(got, expected)
        assert position in [table.index.get_loc(i) for i in got.index]
    assert same_config(table, table.iloc[0], ["host", "target", "size"]).index.tolist() == [10, 15]


def test_comparisons_by_slices_equal_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(comparisons, "COMPARE_SLICE", 4)
    rng = np.random.default_rng(9)
    pairs = [
        (
            rng.normal(100.0, 5.0, size=int(rng.integers(1, 9))),
            rng.normal(110.0, 5.0, size=int(rng.integers(1, 9))),
        )
        for _ in range(30)
    ]
    t = Thresholds(bootstrap_resamples=300)
    one_call = compare_many(pairs, alpha=t.alpha, resamples=300)
    assert any(c.significant for c in one_call) and any(np.isnan(c.ratio_ci_low) for c in one_call)
    got = comparisons._compare(pairs, t)
    assert len(got) == len(one_call)
    for a, b in zip(got, one_call, strict=True):
        np.testing.assert_array_equal(np.array(dataclasses.astuple(a)), np.array(dataclasses.astuple(b)))


def _with_extra(source: Path, values: object, out: Path | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    column = pa.array(values)
    out = out or source
    out.parent.mkdir(parents=True, exist_ok=True)
    extended = table.append_column("my_extra", column)
    pq.write_table(extended.replace_schema_metadata(table.schema.metadata), out)


def test_a_copy_left_out_for_its_extra_column_does_not_shadow_a_good_copy(tmp_path: Path) -> None:
    first = write_job(tmp_path / "00", config_columns(workers=1), [100.0, 101.0])
    job = write_job(tmp_path / "01", config_columns(workers=2), [100.0, 101.0])
    _with_extra(first, [1, 2, 3])
    _with_extra(job, [7, 8, 9], tmp_path / "02" / "metrics.parquet")  # the same job: its extra fits
    _with_extra(job, ["a", "b", "c"])  # 01: the same job, its extra of another type: left out
    loaded = load_results([tmp_path])
    assert sorted(p.parent.name for p in loaded.files) == ["00", "02"]
    assert [Path(p).parent.name for p, _ in loaded.unreadable] == ["01"]
    assert loaded.duplicates == []
