from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qbench.errors import ResultsError
from qbench.results.columns import COLUMNS, metrics_schema
from qbench.results.readers import read_metadata
from qbench.results.writer import write_new_file
from qbench.run.job import run_job
from qbench.settings import Config, flatten

from .conftest import ROOT, small_config

GOLDEN = Path(__file__).parent / "data" / "metrics_schema.json"


def schema_as_json(schema: pa.Schema) -> list[list[str]]:
    return [[f.name, str(f.type)] for f in schema]


def test_metrics_file_matches_the_golden_schema(tmp_path: Path) -> None:
    """Changing a column is a schema change: bump SCHEMA_VERSION, then regenerate the golden file."""
    outcome = run_job(small_config(tmp_path, tasks=20), tmp_path)
    assert outcome.metrics_path is not None
    written = pq.read_schema(outcome.metrics_path)
    golden = json.loads(GOLDEN.read_text())
    assert schema_as_json(written) == golden["columns"]
    assert read_metadata(outcome.metrics_path)["qbench.schema_version"] == golden["schema_version"]


def test_config_columns_cover_every_config_value() -> None:
    schema = metrics_schema(flatten(Config()))
    assert set(flatten(Config())) <= set(schema.names)
    assert len(schema.names) == len(set(schema.names)), "a config key collides with a measurement"


def test_readme_documents_every_column() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", readme, flags=re.MULTILINE))
    expected = set(COLUMNS) | set(flatten(Config()))
    assert expected - documented == set(), "README lacks these columns"


def test_never_overwrites(tmp_path: Path) -> None:
    table = pa.table({"a": [1]})
    target = tmp_path / "m.parquet"
    write_new_file(target, table)
    before = target.read_bytes()
    with pytest.raises(ResultsError, match="never overwrites"):
        write_new_file(target, pa.table({"a": [2]}))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.parquet"], "no temporary file left behind"


def test_foreign_and_corrupt_files_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"a": [1]}), foreign)
    with pytest.raises(ResultsError, match="not a qbench results file"):
        read_metadata(foreign)
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ResultsError, match="not a readable Parquet file"):
        read_metadata(corrupt)
    other = tmp_path / "v99.parquet"
    table = pa.table({"a": [1]}).replace_schema_metadata({"qbench.schema_version": "99"})
    pq.write_table(table, other)
    with pytest.raises(ResultsError, match="schema version 99"):
        read_metadata(other)


def test_results_files_follow_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)
    os.umask(old)
    target = tmp_path / "m.parquet"
    write_new_file(target, pa.table({"a": [1]}))
    expected = 0o666 & ~old
    assert stat.S_IMODE(target.stat().st_mode) == expected
