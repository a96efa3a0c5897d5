"""Hardening of ``python -m qbench``: command-line forms, re-runs, signals, environment values, resources.

In-process tests call preflight directly (fast); the end-to-end ones run
``python -m qbench`` in a scratch directory, as a user would, and are marked slow.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qbench.app import resources
from qbench.app.preflight import inspect, preflight
from qbench.app.redact import REDACTED, env_derived
from qbench.app.schema import register_configs
from qbench.errors import QbenchError, ResultsError, UsageError
from qbench.results.columns import META_CONFIG

from .conftest import ROOT, run_qbench

TINY = ["tasks=30", "iterations=1", "warmup=0", "history_rows=0", "ceiling.enabled=false"]
NO_AGGREGATION = "hydra.callbacks.aggregate.enabled=false"


@pytest.fixture(autouse=True)
def _scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test in its own empty directory, with no resume asked and the schema registered."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QBENCH_RESUME", raising=False)
    register_configs()
    yield


def _refusal(args: list[str]) -> str:
    with pytest.raises(QbenchError) as info:
        preflight(args)
    message = str(info.value)
    assert "\n" not in message and message.strip()
    return message


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` and the hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ----------------------------------------------------------------- 1. command-line forms

# (args, what the one line must name: key and value, what is allowed)
FORMS = [
    (["journal=null"], ["journal='null'", "allowed: delete, persist, truncate, wal"]),
    (["journal="], ["journal=''", "allowed: delete"]),
    (["journal=[wal,delete]"], ["journal='[wal,delete]'", "expected one option of"]),
    (["journal=WAL"], ["journal='WAL'", "(in lower case)"]),
    (["journal.mode=WAL"], ["journal.mode='WAL'", "(in lower case)"]),
    (["synchronous=FULL"], ["synchronous='FULL'", "(in lower case)"]),
    (["+journal=delete"], ["+journal='delete'", "write journal=delete"]),
    (["+worker=5"], ["worker=5", "unknown key"]),
    (["+db.foo=bar"], ["db.foo='bar'", "unknown key"]),
    (["++foo=bar"], ["foo='bar'", "unknown key"]),
    (["+workers=5"], ["+workers", "already in the config"]),
    (["~nokey"], ["~nokey", "unknown key"]),
    (["workers"], ["'workers'", "expected KEY=VALUE"]),
    (["workers=null"], ["workers='null'", "expected a value, not null"]),
    (["db=5"], ["db='5'", "holds keys"]),
    (["hydra/launcher=nonexistent"], ["hydra/launcher='nonexistent'", "allowed: basic"]),
    (["hydra.launcher=nope"], ["hydra.launcher='nope'", "expected a mapping"]),
    (["+hydra.launcher.foo=1"], ["hydra.launcher.foo=1", "takes"]),
    (["hydra.run.dir="], ["hydra.run.dir=''", "expected a directory"]),
    (["-m", "workers=1,2", "hydra.sweep.dir="], ["hydra.sweep.dir=''", "expected a directory"]),
    (["-m", "workers=1,2", "hydra.sweep.subdir=x"], ["hydra.sweep.subdir='x'", "of its own for each job"]),
    (["hydra.run.dir=${oc.env:QBENCH_NO_SUCH_VAR}"], ["hydra.run.dir=", "cannot be resolved"]),
    (["hydra.job.chdir=maybe"], ["hydra.job.chdir='maybe'", "expected true or false"]),
    (["hydra.job_logging.root.level=bogus"], ["root.level='bogus'", "allowed: NOTSET"]),
    (["hydra.callbacks.aggregate=null"], ["hydra.callbacks.aggregate=None", "enabled=false"]),
    (["hydra.callbacks.aggregate.cv=abc"], ["hydra.callbacks.aggregate.cv='abc'", "expected a number"]),
    (["-m", "workers=1,2", "hydra.sweeper.max_batch_size=0"], ["max_batch_size=0", "integer >= 1"]),
    (["-m", "workers=interval(1,4)"], ["workers='interval(1,4)'", "the basic sweeper takes"]),
    (["-m", "workers=range(1,100000000)"], ["workers='range(1,100000000)'", "at most 10,000 jobs"]),
    (["-m", "hydra.sweeper.params.journal=wal,WAL"], ["hydra.sweeper.params.journal=", "cannot be swept"]),
    (["-m", "+hydra.sweeper.params.journal='wal,WAL'"], ["journal='WAL'", "(in lower case)"]),
    (["-r", "-m"], ["-m/--multirun", "choose one of"]),
    (["--resolve"], ["--resolve", "--cfg"]),
    (["workers=${oc.env:QBENCH_NO_SUCH_VAR}"], ["workers=", "environment variable QBENCH_NO_SUCH_VAR"]),
]


@pytest.mark.parametrize(("args", "named"), FORMS, ids=[" ".join(a) for a, _ in FORMS])
def test_every_form_is_one_line_naming_key_value_and_what_is_allowed(
    tmp_path: Path, args: list[str], named: list[str]
) -> None:
    message = _refusal(args)
    for part in named:
        assert part in message, message
    assert "is not allowed" in message
    assert list(tmp_path.iterdir()) == []


def test_case_is_handled_alike_for_groups_and_keys_and_off_keeps_its_spellings() -> None:
    assert "(in lower case)" in _refusal(["journal=WAL"])
    assert "(in lower case)" in _refusal(["journal.mode=WAL"])
    assert "(in lower case)" in _refusal(["claim.tx=IMMEDIATE"])
    for off in ("off", "OFF", "Off", "false", "no"):
        assert preflight([f"synchronous={off}"]) == 1


def test_sweeps_in_hydra_sweeper_params_are_expanded_like_command_line_sweeps(tmp_path: Path) -> None:
    assert preflight(["-m", "+hydra.sweeper.params.journal='wal,delete'", "workers=1,2"]) == 4
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "mine.yaml").write_text(
        "defaults:\n  - config\n  - _self_\nhydra:\n  sweeper:\n    params:\n      journal: wal,WAL\n"
    )
    args = ["--config-dir", str(mine), "--config-name", "mine"]
    assert "journal='WAL'" in _refusal(["-m", *args])
    # hydra.mode: MULTIRUN in a config makes a sweep without -m, as hydra.main does
    (mine / "sweep.yaml").write_text(
        "defaults:\n  - config\n  - _self_\nhydra:\n  mode: MULTIRUN\n  sweeper:\n    params:\n"
        "      workers: 1,2,3\n"
    )
    assert preflight(["--config-dir", str(mine), "--config-name", "sweep"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


REFUSED_END_TO_END = [
    (["journal=null"], "journal='null'"),
    (["journal.mode=WAL"], "journal.mode='WAL'"),
    (["+worker=5"], "worker=5"),
    (["+db.foo=bar"], "db.foo='bar'"),
    (["++foo=bar"], "foo='bar'"),
    (["hydra/launcher=nonexistent"], "hydra/launcher='nonexistent'"),
    (["-m", "workers=1,2", "hydra.sweep.dir="], "hydra.sweep.dir=''"),
    (["-m", "+hydra.sweeper.params.journal='wal,WAL'"], "journal='WAL'"),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "named"), REFUSED_END_TO_END, ids=[" ".join(a) for a, _ in REFUSED_END_TO_END]
)
def test_refused_forms_end_to_end_exit_2_nothing_written(tmp_path: Path, args: list[str], named: str) -> None:
    proc = run_qbench([*args, *TINY], tmp_path)
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert line.startswith("qbench: error: ") and named in line and "is not allowed" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sweeper_params_from_a_config_dir_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "mine.yaml").write_text(
        "defaults:\n  - config\n  - _self_\nhydra:\n  sweeper:\n    params:\n      journal: wal,WAL\n"
    )
    proc = run_qbench(["-m", "--config-dir", "mine", "--config-name", "mine", *TINY], tmp_path)
    assert proc.returncode == 2
    assert "journal='WAL' is not allowed" in _one_error_line(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no outputs/, no multirun.yaml


# ----------------------------------------------------------------- 2. re-running into a directory


def test_a_directory_holding_a_sweep_is_refused_unless_resuming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    message = _refusal(["-m", "workers=1,2", f"hydra.sweep.dir={sweep}"])
    assert f"hydra.sweep.dir='{sweep}' is not allowed: it already holds a sweep (multirun.yaml)" in message
    assert "QBENCH_RESUME=1" in message and "new hydra.sweep.dir" in message
    monkeypatch.setenv("QBENCH_RESUME", "1")
    assert preflight(["-m", "workers=1,2", f"hydra.sweep.dir={sweep}"]) == 2
    # an empty directory (a plan makes it first) is not a sweep
    (tmp_path / "empty").mkdir()
    monkeypatch.delenv("QBENCH_RESUME")
    assert preflight(["-m", "workers=1,2", f"hydra.sweep.dir={tmp_path / 'empty'}"]) == 2


def test_a_run_directory_holding_results_is_refused_as_results_in_the_way(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "job_status.json").write_text("{}")
    with pytest.raises(ResultsError, match="never overwrites results") as info:
        inspect([f"hydra.run.dir={run}"])
    assert "QBENCH_RESUME=1" in str(info.value)


@pytest.mark.slow
def test_resuming_a_sweep_never_touches_a_finished_job(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    first = run_qbench(["-m", "workers=1,2", *TINY, NO_AGGREGATION, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert first.returncode == 0, first.stderr
    before = _tree(sweep)
    again = run_qbench(["-m", "workers=1,2", *TINY, NO_AGGREGATION, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert again.returncode == 2
    line = _one_error_line(again)
    assert "already holds a sweep" in line and "QBENCH_RESUME=1" in line
    assert _tree(sweep) == before
    resumed = run_qbench(
        ["-m", "workers=1,2,3", *TINY, NO_AGGREGATION, f"hydra.sweep.dir={sweep}"],
        tmp_path,
        env_extra={"QBENCH_RESUME": "1"},
    )
    assert resumed.returncode == 0, resumed.stderr
    assert (resumed.stdout + resumed.stderr).count("already done with this config, kept") == 2
    after = _tree(sweep)
    kept = {k: v for k, v in before.items() if k.startswith(("0/", "1/")) or k == "multirun.yaml"}
    assert {k: after[k] for k in kept} == kept  # .hydra/*.yaml, qbench.log, results: byte-identical
    assert "2/metrics.parquet" in after
    assert json.loads((sweep / "2" / "job_status.json").read_text())["status"] == "ok"


@pytest.mark.slow
def test_a_finished_single_run_is_refused_or_kept_and_never_touched(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [*TINY, f"hydra.run.dir={run}"]
    assert run_qbench(args, tmp_path).returncode == 0
    before = _tree(run)
    again = run_qbench(args, tmp_path)
    assert again.returncode == 1
    assert "never overwrites results" in _one_error_line(again)
    resumed = run_qbench(args, tmp_path, env_extra={"QBENCH_RESUME": "1"})
    assert resumed.returncode == 0, resumed.stderr
    assert "already done with this config, kept" in resumed.stdout
    assert _tree(run) == before


# ----------------------------------------------------------------- 3. signals


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_sweep_in_one_line_and_aggregates_the_finished_jobs(
    tmp_path: Path, signum: signal.Signals
) -> None:
    sweep = tmp_path / "sweep"
    env = dict(os.environ, PYTHONPATH=str(ROOT), QBENCH_NO_PROGRESS="1")
    env.pop("QBENCH_RESUME", None)
    args = ["-m", "tasks=150,3000", "service.kind=sleep", "service.ms=5", "iterations=1", "warmup=0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "qbench", *args, "ceiling.enabled=false", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (sweep / "1" / ".hydra").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.3)  # job 0 finished; job 1 (15 s of work) has started
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0] == (
        f"qbench: interrupted ({signum.name}) during job 1; 1 of 2 jobs finished, aggregated into {sweep}"
    )
    assert "Traceback" not in out + err
    assert json.loads((sweep / "0" / "job_status.json").read_text())["status"] == "ok"
    interrupted = json.loads((sweep / "1" / "job_status.json").read_text())
    assert interrupted["status"] == "interrupted" and signum.name in interrupted["reason"]
    assert (sweep / "summary.parquet").exists() and (sweep / "report.md").exists()


# ----------------------------------------------------------------- 4. values from the environment


def test_values_derived_from_the_environment_are_found() -> None:
    raw = {"a": "${oc.env:X}", "b": "${a}", "c": "x${b}y", "d": 5, "e": "${d}", "f": {"g": "${c}"}}
    assert env_derived(raw) == [("a",), ("b",), ("c",), ("f", "g")]
    assert env_derived({"a": 1, "b": "${a}"}) == []


def test_a_refused_value_from_the_environment_is_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QBENCH_TEST_N", "0")
    message = _refusal(["workers=${oc.env:QBENCH_TEST_N}"])
    assert message == f"workers={REDACTED} is not allowed: expected an integer in [1, 10000]"
    monkeypatch.setenv("QBENCH_TEST_DIR", "/no/such/secret-place")
    message = _refusal(["db.dir=${oc.env:QBENCH_TEST_DIR}"])
    assert "secret-place" not in message and REDACTED in message
    monkeypatch.setenv("QBENCH_TEST_N", "-5")
    message = _refusal(["tasks=${oc.env:QBENCH_TEST_N}", "ceiling.tasks=${tasks}"])
    assert "-5" not in message and REDACTED in message


ENV_REFUSALS = [
    ["journal=${oc.env:QBENCH_TEST_SEK}"],
    ["pool=${oc.env:QBENCH_TEST_SEK}"],
    ["hydra/launcher=${oc.env:QBENCH_TEST_SEK}"],
    ["hydra.callbacks.aggregate.cv=${oc.env:QBENCH_TEST_SEK}"],
    ["+hydra.foo=${oc.env:QBENCH_TEST_SEK}"],
    ["workers=${oc.env:QBENCH_TEST_SEK}"],
    ["tasks=${oc.env:QBENCH_TEST_SEK}", "hydra.callbacks.aggregate.cv=${tasks}"],
]


@pytest.mark.parametrize("args", ENV_REFUSALS, ids=[" ".join(a) for a in ENV_REFUSALS])
def test_group_choices_and_hydra_keys_from_the_environment_are_not_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.setenv("QBENCH_TEST_SEK", "99999")
    message = _refusal(args)
    assert "99999" not in message and REDACTED in message, message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_environment_values_stay_out_of_results_logs_and_headlines(tmp_path: Path) -> None:
    secret = tmp_path / "secret-place"
    secret.mkdir()
    run = tmp_path / "run"
    proc = run_qbench(
        [
            "db.dir=${oc.env:QBENCH_TEST_DB_DIR}",
            "workers=${oc.env:QBENCH_TEST_WORKERS}",
            "tasks=${oc.env:QBENCH_TEST_TASKS}",
            "ceiling.tasks=${tasks}",
            "iterations=1",
            "warmup=0",
            "history_rows=0",
            f"hydra.run.dir={run}",
        ],
        tmp_path,
        env_extra={
            "QBENCH_TEST_DB_DIR": str(secret),
            "QBENCH_TEST_WORKERS": "3",
            "QBENCH_TEST_TASKS": "4321",
        },
    )
    assert proc.returncode == 0, proc.stderr
    for text in (proc.stdout, proc.stderr, (run / "qbench.log").read_text()):
        assert str(secret) not in text and "4321" not in text
    assert "audit ok" in proc.stdout + proc.stderr
    table = pq.read_table(run / "metrics.parquet")
    for column in ("db_dir", "workers", "tasks", "ceiling_tasks"):
        assert set(table.column(column).to_pylist()) == {REDACTED}, column
    config = (table.schema.metadata or {})[META_CONFIG.encode()].decode()
    assert str(secret) not in config and "4321" not in config
    assert json.loads((run / "job_status.json").read_text())["status"] == "ok"
    assert str(secret).encode() not in (run / "metrics.parquet").read_bytes()  # the machine info too


# ----------------------------------------------------------------- 5. time and resources


def test_connections_are_checked_against_the_open_files_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources, "open_files_limits", lambda: (256, 256))
    message = _refusal(["workers=200"])
    assert message.startswith("workers=200 is not allowed: expected at most 96 connections")
    assert "open-files limit is 256" in message
    assert _refusal(["pool=fixed", "pool.size=500", "workers=1"]).startswith("pool.size=500 is not allowed")
    assert preflight(["pool=shared", "workers=10000"]) == 1  # coroutines, one connection


def test_payload_is_checked_against_sqlite_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _refusal(["payload_bytes=1000000000"])
    assert "SQLite's maximum length" in message and "SQLITE_MAX_LENGTH" in message
    monkeypatch.setattr(resources, "available_memory", lambda: 10_000_000)
    message = _refusal(["payload_bytes=1000", "tasks=100000"])
    assert message.startswith("payload_bytes=1000 is not allowed: the backlog (payload_bytes x tasks)")
    assert preflight(["payload_bytes=1000", "tasks=1000"]) == 1


@pytest.mark.slow
def test_workers_beyond_the_open_files_limit_are_refused_end_to_end(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), QBENCH_NO_PROGRESS="1")
    proc = subprocess.run(
        ["bash", "-c", f'ulimit -n 256 && exec "{sys.executable}" -m qbench workers=1000 tasks=10'],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert "workers=1000 is not allowed: expected at most" in _one_error_line(proc)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------- 6. fuzzing the validator

_KEYS = [
    "workers", "tasks", "iterations", "warmup", "synchronous", "payload_bytes", "history_rows",
    "iteration_timeout_s", "journal", "journal.mode", "pool", "pool.size", "pool.ratio", "busy.policy",
    "busy.timeout_ms", "claim.tx", "claim.batch", "service.kind", "service.ms", "db", "db.dir", "db.keep",
    "metrics.level", "ceiling.enabled", "ceiling.tasks", "hydra.job.chdir", "hydra.mode", "hydra.verbose",
    "hydra/launcher", "hydra/sweeper", "hydra.sweeper.params", "hydra.callbacks.aggregate.cv",
    "hydra.callbacks.aggregate", "hydra.sweep.subdir", "hydra.job_logging.root.level", "nokey", "a.b.c",
]  # fmt: skip
_VALUES = [
    "", "null", "true", "WAL", "wal", "off", "OFF", "0", "-1", "1e3", "3.5", "[1,2]", "{a:1}", "1,2",
    "'a,b'", "${tasks}", "${oc.env:QBENCH_FUZZ_UNSET}", "${oc.env:HOME}", "interval(1,2)", "range(1,3)",
    "choice(1,2)", "glob(*)", "${", "'", '"', "\\", "=", "@", "~", "x" * 300,
]  # fmt: skip
_override = st.builds(
    lambda prefix, key, value: f"{prefix}{key}={value}",
    st.sampled_from(["", "", "", "+", "++", "~"]),
    st.one_of(st.sampled_from(_KEYS), st.text(alphabet="abcdefghijklmnopqrstuvwxyz._/@$", max_size=12)),
    st.one_of(st.sampled_from(_VALUES), st.text(max_size=20), st.integers().map(str)),
)
_argv = st.builds(
    lambda multirun, overrides: (["-m"] if multirun else []) + overrides,
    st.booleans(),
    st.lists(st.one_of(_override, st.text(max_size=15)), max_size=4),
)


class _Hung(BaseException):
    """Raised by the alarm: a BaseException, so no ``except Exception`` in preflight can hide a hang."""


def _alarm(signum: int, frame: object) -> None:
    raise _Hung("preflight hung")


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(argv=_argv)
def test_any_command_line_passes_or_is_one_line(argv: list[str]) -> None:
    """Whatever the command line, preflight returns or raises one line: never another exception or a hang."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(30)
    try:
        preflight(argv)
    except QbenchError as exc:
        message = str(exc)
        assert message.strip() and "\n" not in message, repr(message)
        assert isinstance(exc, UsageError | ResultsError)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------- 7. a full disk


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 400 KiB tmpfs (root only): room for a few jobs of a sweep, then a full disk."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root needed): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_during_a_sweep_is_named_in_one_line_and_earlier_jobs_are_kept(
    tmp_path: Path, full_disk: Path
) -> None:
    sweep = full_disk / "sw"
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    args = ["-m", "workers=1,2,3,4,5,6,7,8", "tasks=100", "iterations=1", "warmup=0", "ceiling.enabled=false"]
    proc = run_qbench([*args, f"db.dir={db_dir}", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Logging error" not in proc.stderr
    assert any(
        line.startswith("qbench: ") and "No space left on device" in line for line in proc.stderr.splitlines()
    ), proc.stderr
    finished = [d for d in sorted(sweep.iterdir()) if (d / "job_status.json").is_file()]
    assert finished, proc.stderr
    for job in finished:
        status = json.loads((job / "job_status.json").read_text())
        if status["status"] == "ok":
            assert pq.read_table(job / "metrics.parquet").num_rows > 0
        else:
            assert "No space left on device" in status["reason"]
    ok = [d for d in finished if json.loads((d / "job_status.json").read_text())["status"] == "ok"]
    never = [d for d in sorted(sweep.iterdir()) if d.is_dir() and d not in ok]
    for job in never:  # every job that did not finish ok is named, with the system's words
        assert f"  {job}: " in proc.stderr, proc.stderr


@pytest.mark.slow
def test_a_sweep_whose_aggregation_fails_exits_1_naming_it(tmp_path: Path, full_disk: Path) -> None:
    sweep = full_disk / "sw"
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    args = ["-m", "workers=1,2", "tasks=100", "iterations=1", "warmup=0", "ceiling.enabled=false"]
    proc = run_qbench([*args, f"db.dir={db_dir}", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"qbench: aggregation of {sweep} failed: ")
    assert "No space left on device" in lines[0]
    for job in ("0", "1"):
        assert json.loads((sweep / job / "job_status.json").read_text())["status"] == "ok"


def test_a_failed_aggregation_is_recorded_for_the_exit_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omegaconf import OmegaConf

    from qbench.analysis import pipeline
    from qbench.app import failures
    from qbench.app.callbacks import AggregateCallback

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device", str(tmp_path / "summary.parquet"))

    monkeypatch.setattr(pipeline, "aggregate", refuse)
    failures.clear()
    AggregateCallback().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    written = tmp_path / "summary.parquet"
    expected = f"aggregation of {tmp_path} failed: cannot write {written}: No space left on device"
    assert [expected] == failures.AGGREGATION
    failures.clear()


SILENT_FORMS = [
    (["+hydra.foo=1"], "+hydra.foo='1' is not allowed: unknown key"),
    (["++hydra.job.foo=1"], "+hydra.job.foo='1' is not allowed: unknown key"),
    (["~workers"], "~workers is not allowed: a qbench key is set, not deleted (write workers=VALUE)"),
    (["~db.dir"], "~db.dir is not allowed: a qbench key is set, not deleted"),
    (
        ["hydra.callbacks.aggregate._target_=os.system"],
        "hydra.callbacks.aggregate._target_='os.system' is not allowed: a callback's _target_ is not set",
    ),
]


@pytest.mark.parametrize(("args", "named"), SILENT_FORMS, ids=[" ".join(a) for a, _ in SILENT_FORMS])
def test_forms_that_ran_silently_are_refused(tmp_path: Path, args: list[str], named: str) -> None:
    assert named in _refusal(args)
    assert list(tmp_path.iterdir()) == []


def test_a_run_directory_holding_only_hydra_files_is_a_killed_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    with pytest.raises(ResultsError, match="QBENCH_RESUME=1"):
        inspect([f"hydra.run.dir={run}"])
    monkeypatch.setenv("QBENCH_RESUME", "1")
    plan = inspect([f"hydra.run.dir={run}"])
    assert plan.existing and plan.kept is None  # resumed: set aside, then run again
