from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from qbench.app.paths import conf_dir
from qbench.app.preflight import to_config
from qbench.app.schema import register_configs
from qbench.errors import ConfigError
from qbench.kinds import JournalMode, Synchronous, TxMode
from qbench.settings import Config, flatten, pool_connections, validate


def compose_config(*overrides: str) -> Config:
    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        dcfg = compose(config_name="config", overrides=list(overrides))
    return validate(to_config(dcfg))


def test_defaults_compose_to_a_valid_config() -> None:
    cfg = compose_config()
    assert cfg.workers == 1
    assert cfg.iterations == 10 and cfg.warmup == 2
    assert cfg.journal.mode is JournalMode.WAL
    assert cfg.synchronous is Synchronous.NORMAL
    assert cfg.busy.policy == "native" and cfg.busy.timeout_ms == 5000
    assert cfg.claim.tx is TxMode.AUTOCOMMIT
    assert cfg.db.dir is None


@pytest.mark.parametrize(
    ("journal", "natural"),
    [("wal", "normal"), ("delete", "full"), ("truncate", "full"), ("persist", "full")],
)
def test_each_journal_brings_its_natural_synchronous(journal: str, natural: str) -> None:
    cfg = compose_config(f"journal={journal}")
    assert cfg.journal.mode == journal
    assert cfg.synchronous == natural


def test_synchronous_override_beats_the_journal_default() -> None:
    assert compose_config("journal=delete", "synchronous=normal").synchronous is Synchronous.NORMAL
    assert compose_config("journal=wal", "synchronous=full").synchronous is Synchronous.FULL


@pytest.mark.parametrize("raw", ["off", "OFF", "Off", False, "False", "no"])
def test_synchronous_off_means_off_whatever_yaml_did_to_it(raw: object) -> None:
    cfg = validate(dataclasses.replace(Config(), synchronous=raw))  # type: ignore[arg-type]
    assert cfg.synchronous is Synchronous.OFF


def test_synchronous_off_on_the_command_line() -> None:
    assert compose_config("synchronous=off").synchronous is Synchronous.OFF


def test_yaml_true_for_synchronous_is_refused_with_a_hint() -> None:
    with pytest.raises(ConfigError, match=r"synchronous=.*YAML reads on"):
        validate(dataclasses.replace(Config(), synchronous=True))  # type: ignore[arg-type]


def test_pool_options_compose() -> None:
    assert pool_connections(compose_config("pool=per_worker", "workers=7")) == 7
    assert pool_connections(compose_config("pool=ratio", "workers=7")) == 4  # ceil(3.5)
    assert pool_connections(compose_config("pool=ratio", "pool.ratio=0.1", "workers=3")) == 1
    assert pool_connections(compose_config("pool=fixed", "pool.size=3", "workers=10")) == 3
    assert pool_connections(compose_config("pool=shared", "workers=10")) == 1


def _executor(**changes: object) -> object:
    return dataclasses.replace(Config().executor, **changes)  # type: ignore[arg-type]


def _workload(**changes: object) -> object:
    return dataclasses.replace(Config().workload, **changes)  # type: ignore[arg-type]


BAD = [
    ({"workers": 0}, "workers"),
    ({"workers": -3}, "workers"),
    ({"tasks": 0}, "tasks"),
    ({"iterations": 0}, "iterations"),
    ({"warmup": -1}, "warmup"),
    ({"payload_bytes": -1}, "payload_bytes"),
    ({"synchronous": "bogus"}, "synchronous"),
    ({"journal": dataclasses.replace(Config().journal, mode="bogus")}, "journal.mode"),  # type: ignore[arg-type]
    ({"busy": dataclasses.replace(Config().busy, timeout_ms=-1)}, "busy.timeout_ms"),
    ({"busy": dataclasses.replace(Config().busy, policy="sometimes")}, "busy.policy"),  # type: ignore[arg-type]
    ({"busy": dataclasses.replace(Config().busy, backoff_cap_ms=0.5)}, "busy.backoff_cap_ms"),
    ({"claim": dataclasses.replace(Config().claim, batch=0)}, "claim.batch"),
    ({"claim": dataclasses.replace(Config().claim, tx="exclusive")}, "claim.tx"),  # type: ignore[arg-type]
    ({"pool": dataclasses.replace(Config().pool, size=0)}, "pool.size"),
    ({"pool": dataclasses.replace(Config().pool, ratio=0.0)}, "pool.ratio"),
    ({"service": dataclasses.replace(Config().service, ms=-1.0)}, "service.ms"),
    ({"db": dataclasses.replace(Config().db, dir="/does/not/exist")}, "db.dir"),
    # the load issue's bad inputs
    ({"executor": _executor(kind="process", processes=0)}, "executor.processes"),
    ({"executor": _executor(kind="process", processes=3), "workers": 2}, "executor.processes"),
    ({"workload": _workload(kind="steady", rate=0.0)}, "workload.rate"),
    ({"workload": _workload(kind="steady", rate=-5.0)}, "workload.rate"),
    ({"workload": _workload(kind="steady", rate=0.1, duration_s=1.0)}, "workload.rate"),
    ({"workload": _workload(kind="steady", rate=2e6)}, "workload.rate"),
    ({"workload": _workload(kind="steady", duration_s=0.0)}, "workload.duration_s"),
    ({"workload": _workload(kind="burst", burst_s=2.0, burst_every_s=2.0)}, "workload.burst_s"),
    (
        {"workload": _workload(kind="steady", duration_s=10.0), "iteration_timeout_s": 5.0},
        "iteration_timeout_s",
    ),
    ({"service": dataclasses.replace(Config().service, sigma=-0.1)}, "service.sigma"),
    ({"faults": dataclasses.replace(Config().faults, kill=1)}, "faults.kill"),
    ({"host_lock": "bogus"}, "host_lock"),
]


@pytest.mark.parametrize(("changes", "key"), BAD, ids=[k for _, k in BAD])
def test_bad_values_name_key_value_and_what_is_allowed(changes: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(dataclasses.replace(Config(), **changes))  # type: ignore[arg-type]
    assert info.value.key == key
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{key}=")
    assert "allowed" in message or "expected" in message


def test_unwritable_db_dir_is_refused(tmp_path: Path) -> None:
    target = Path("/proc") if Path("/proc").is_dir() else tmp_path / "ro"
    with pytest.raises(ConfigError, match=r"db\.dir"):
        validate(dataclasses.replace(Config(), db=dataclasses.replace(Config().db, dir=str(target))))


def test_db_dir_is_resolved_and_probe_leaves_nothing(tmp_path: Path) -> None:
    cfg = validate(dataclasses.replace(Config(), db=dataclasses.replace(Config().db, dir=str(tmp_path))))
    assert cfg.db.dir == str(tmp_path.resolve())
    assert list(tmp_path.iterdir()) == []


def test_flatten_gives_one_column_per_value_with_units_kept() -> None:
    flat = flatten(compose_config("busy.timeout_ms=250"))
    assert flat["busy_timeout_ms"] == 250
    assert flat["journal_mode"] == "wal" and type(flat["journal_mode"]) is str
    assert flat["pool_kind"] == "per_worker"
    assert flat["claim_batch"] == 1
    assert "workers" in flat and "synchronous" in flat
    assert all("." not in key for key in flat)
