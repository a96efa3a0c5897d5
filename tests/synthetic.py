"""Results files with known numbers, written through qbench's own schema and writer."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qbench.results.columns import (
    MEASURE_COLUMNS,
    META_CONFIG,
    META_SCHEMA_VERSION,
    META_STATUS,
    META_SYSINFO,
    METRICS_FILE,
    SCHEMA_VERSION,
    build_table,
)
from qbench.results.writer import write_new_file
from qbench.settings import Config, flatten


def config_columns(**changes: Any) -> dict[str, Any]:
    """Flat config columns of the default config with dotted-key changes (``journal.mode='delete'``)."""
    cfg = Config()
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in changes.items():
        if "." in key:
            section, name = key.split(".", 1)
            sections.setdefault(section, {})[name] = value
        else:
            top[key] = value
    for section, values in sections.items():
        top[section] = dataclasses.replace(getattr(cfg, section), **values)
    return flatten(dataclasses.replace(cfg, **top))


def measure_row(tps: float, workers: int, tasks: int = 1000, **overrides: Any) -> dict[str, Any]:
    duration = tasks / tps
    row: dict[str, Any] = {}
    for c in MEASURE_COLUMNS:
        row[c.name] = 0.0 if str(c.type) == "double" else (True if str(c.type) == "bool" else 0)
    row.update(
        pool_connections=workers,
        duration_s=duration,
        tasks_completed=tasks,
        throughput_tps=tps,
        efficiency_tps_per_worker=tps / workers,
        transactions=2 * tasks,
        e2e_latency_p50_ms=duration * 500,
        e2e_latency_p95_ms=duration * 950,
        e2e_latency_p99_ms=duration * 990,
        e2e_latency_max_ms=duration * 1000,
        cpu_util_cores=0.5,
        ceiling_tps=10_000.0,
        harness_efficiency=tps / 10_000.0,
        tasks_enqueued=tasks,
        tasks_acked=tasks,
        audit_ok=True,
        integrity_ok=True,
    )
    row.update(overrides)
    return row


def write_job(
    job_dir: Path,
    config: Mapping[str, Any],
    throughputs: list[float],
    *,
    warmup: int = 1,
    host: str = "testhost",
    status: str = "ok",
    extra: Callable[[int], dict[str, Any]] | None = None,
) -> Path:
    """One job file: ``warmup`` warmup rows then one measured row per throughput."""
    job_dir.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex
    workers = int(config["workers"])
    rows = []
    values = [throughputs[0]] * warmup + list(throughputs)
    for i, tps in enumerate(values):
        rows.append(
            {
                "run_id": run_id,
                "host": host,
                "job_num": 0,
                "iteration": i,
                "phase": "warmup" if i < warmup else "measure",
                "started_at": datetime.now(UTC),
                **config,
                **measure_row(tps, workers, **(extra(i) if extra else {})),
            }
        )
    metadata = {
        META_SCHEMA_VERSION: SCHEMA_VERSION,
        META_CONFIG: "synthetic: true\n",
        META_SYSINFO: json.dumps({"host": host}),
        META_STATUS: json.dumps({"status": status, "reason": "" if status == "ok" else "audit failed"}),
    }
    path = job_dir / METRICS_FILE
    write_new_file(path, build_table(rows, dict(config), metadata))
    return path
