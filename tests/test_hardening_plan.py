"""Plans are shared data: what a plan may set, bounded loading, honest job counts, references checked
before anything runs, cache keys over resolved values, and signals that stop a plan's sweep with it."""

from __future__ import annotations

import fcntl
import io
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest

from qbench.errors import PlanError, PlanInterrupted
from qbench.plan import process
from qbench.plan.cli import main
from qbench.plan.reading import MAX_BYTES
from qbench.plan.resolve import read_recommendation
from qbench.plan.runner import Runner, check_overrides
from qbench.plan.spec import MAX_STAGES, Plan, find_references, load_plan

from .conftest import ROOT

ALLOWED = "(plans may set qbench keys, hydra/launcher, hydra/sweeper, hydra.launcher.*, hydra.sweeper.*)"
SMALL = "tasks=60, iterations=2, warmup=0, history_rows=10, ceiling.enabled=false"


def write_plan(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def refused(tmp_path: Path, text: str) -> str:
    """The one line a plan is refused with at load time."""
    with pytest.raises(PlanError) as info:
        load_plan(write_plan(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    return message


def override_plan(override: str) -> str:
    return f"stages: {{fast: {{sweep: {{overrides: [{json.dumps(override)}], grid: {{workers: [1]}}}}}}}}\n"


def run_main(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(list(args))
    return code, out.getvalue()


# ---------------------------------------------------------------- 1. what a plan may set

REFUSED_OVERRIDES = {
    # the exploit: qbench's own git helper as a Hydra callback
    "hydra.callbacks.x._target_=qbench.run.sysinfo._git": "hydra.callbacks.x._target_ is not allowed",
    "+hydra.callbacks.x._target_=qbench.run.sysinfo._git": "hydra.callbacks.x._target_ is not allowed",
    "hydra.callbacks.aggregate.enabled=false": "hydra.callbacks.aggregate.enabled is not allowed",
    "+foo._target_=os.system": "foo._target_ is not allowed",
    "++extra=1": "++extra is not allowed",
    "~hydra.launcher": "~hydra.launcher is not allowed",
    "hydra.run.dir=/tmp/x": "hydra.run.dir is not allowed",
    "hydra.job.env_set.X=1": "hydra.job.env_set.X is not allowed",
    "hydra/job_logging=none": "hydra/job_logging is not allowed",
    "hydra.launcher.callbacks.x=1": "hydra.launcher.callbacks.x is not allowed",
    "hydra.sweeper.params.workers=4": "hydra.sweeper.params.workers is not allowed",
    "journal@hydra.callbacks.x=wal": "journal@hydra.callbacks.x is not allowed",
    "hydra.launcher.foo={_target_:os.system}": "_target_ in hydra.launcher.foo is not allowed",
    "hydra.launcher.setup=[rm -rf x]": "is not a plain value",
    "hydra/launcher=../evil": "is not a plain value",
    "workers=${oc.env:HOME}": "workers: ${oc.env:HOME} is not allowed in a plan",
    "tasks=${now:%H}": "tasks: ${now:%H} is not allowed in a plan",
    "tasks=${oc.create:{a:1}}": "${oc.create:{a:1} is not allowed in a plan",
    "tasks=${my_resolver:1}": "${my_resolver:1} is not allowed in a plan",
    "hydra.sweep.dir=/tmp/x": "hydra.sweep.dir=/tmp/x is not inside the stage's output directory",
    "hydra.sweep.dir=../..": "hydra.sweep.dir=../.. is not inside the stage's output directory",
    "hydra.sweep.dir=a/../../b": "is not inside the stage's output directory",
    "--config-dir=/tmp": "is a command-line flag",
    "--experimental-rerun=/tmp/config.pickle": "is a command-line flag",
    "db.dir=/tmp": "db.dir is not allowed in a plan",
    "workers": "workers is not a key=value override",
}


@pytest.mark.parametrize("override", sorted(REFUSED_OVERRIDES))
def test_overrides_outside_the_allowlist_are_refused_at_load_naming_stage_and_key(
    tmp_path: Path, override: str
) -> None:
    message = refused(tmp_path, override_plan(override))
    assert message.startswith("plan p.yaml: stage 'fast': ")
    assert REFUSED_OVERRIDES[override] in message


def test_the_callback_exploit_gets_the_documented_line() -> None:
    from qbench.plan.safety import override_problem

    assert override_problem("hydra.callbacks.x._target_=qbench.run.sysinfo._git") == (
        f"hydra.callbacks.x._target_ is not allowed in a plan {ALLOWED}"
    )


REFUSED_GRIDS = {
    "{hydra.callbacks.x._target_: [a]}": "hydra.callbacks.x._target_ is not allowed",
    "{hydra.launcher.n_jobs: [1, 2]}": "hydra.launcher.n_jobs cannot be swept",
    "{+extra: [1]}": "+extra is not allowed",
    "{workers: [{_target_: os.system}]}": "is not a scalar",
    "{journal: ['${oc.env:HOME}']}": "${oc.env:HOME} is not allowed in a plan",
    "{journal: [wal, '${now:%H}']}": "${now:%H} is not allowed",
    "{db.dir: [/tmp]}": "db.dir is not allowed",
}


@pytest.mark.parametrize("grid", sorted(REFUSED_GRIDS))
def test_grid_keys_and_values_follow_the_same_allowlist(tmp_path: Path, grid: str) -> None:
    message = refused(tmp_path, f"stages: {{fast: {{sweep: {{grid: {grid}}}}}}}\n")
    assert message.startswith("plan p.yaml: stage 'fast': ") and REFUSED_GRIDS[grid] in message


def test_allowed_hydra_keys_pass_load_and_composition(tmp_path: Path) -> None:
    plan = load_plan(
        write_plan(
            tmp_path,
            "stages: {fast: {sweep: {overrides: [hydra/launcher=basic, hydra/sweeper=basic, "
            "hydra.sweeper.max_batch_size=2, hydra.sweep.dir=inner/sweep, ++workers=2, journal=delete], "
            "grid: {claim.batch: [1, 2]}}}}\n",
        )
    )
    check_overrides(plan)


@pytest.mark.parametrize("flag", ["--dry-run", "--status", None])
def test_dry_run_and_status_refuse_it_too_exit_2_one_line_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str | None
) -> None:
    path = write_plan(tmp_path, override_plan("hydra.callbacks.x._target_=qbench.run.sysinfo._git"))
    outputs = tmp_path / "outputs"
    code, out = run_main(str(path), "--outputs", str(outputs), *([flag] if flag else []))
    assert code == 2 and out == ""
    assert capsys.readouterr().err.splitlines() == [
        f"qbench.plan: error: plan p.yaml: stage 'fast': hydra.callbacks.x._target_ is not allowed "
        f"in a plan {ALLOWED}"
    ]
    assert not outputs.exists()


# ---------------------------------------------------------------- 2. bounded loading


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [{','.join(['*' + chr(96 + i)] * 9)}]")
    message = refused(tmp_path, "\n".join(lines) + "\nstages: {x: {sweep: {grid: {workers: *j}}}}\n")
    assert message == "plan p.yaml: YAML anchors are not allowed in a plan (&a, line 1)"
    # an alias without its anchor is refused too, by the same loader
    assert "YAML aliases are not allowed" in refused(tmp_path, "stages: *x\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stages: {a: {sweep: {grid: {workers: [1]}}}}\n" + "#" * MAX_BYTES, "larger than 1024 KiB"),
        ("x: " + "[" * 200 + "]" * 200 + "\n", "nested more than 32 levels deep"),
        ("stages: {a: {sweep: {}}, a: {sweep: {}}}\n", "duplicate key 'a' (line 1)"),
        ("stages: !!python/object/apply:os.system [echo hi]\n", "not readable YAML"),
        ("stages: " + "9" * 5000 + "\n", "not readable YAML"),
        (
            "stages:\n" + "".join(f"  s{i}: {{sweep: {{}}}}\n" for i in range(MAX_STAGES + 1)),
            f"{MAX_STAGES + 1} stages; a plan may have at most {MAX_STAGES}",
        ),
        (
            "stages: {a: {sweep: {grid: {workers: "
            + str(list(range(1, 101)))
            + ", claim.batch: "
            + str(list(range(1, 102)))
            + "}}}}\n",
            "the grid asks for 10,100 jobs; a stage may run at most 10,000",
        ),
    ],
    ids=["size", "depth", "duplicate", "python-tag", "huge-int", "stages", "jobs"],
)
def test_plan_files_are_read_within_bounds(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refused(tmp_path, text)


def test_an_endless_file_is_read_only_up_to_the_cap() -> None:
    with pytest.raises(PlanError, match="larger than 1024 KiB"):
        load_plan(Path("/dev/zero"))


# ---------------------------------------------------------------- 3. sweep syntax and job counts


@pytest.mark.parametrize(
    ("sweep", "expected"),
    [
        ("{grid: {workers: 'range(1,4)'}}", "grid workers: 'range(1,4)' is Hydra sweep syntax"),
        ("{grid: {journal: 'wal,delete'}}", "grid journal: 'wal,delete' is Hydra sweep syntax"),
        ("{grid: {journal: [wal, 'delete,truncate']}}", "list the values instead"),
        ("{grid: {workers: [1, 'choice(2,4)']}}", "is Hydra sweep syntax"),
        ("{overrides: ['workers=1,2']}", "workers=1,2 is Hydra sweep syntax"),
        ("{overrides: ['workers=range(1,3)']}", "workers=range(1,3) is Hydra sweep syntax"),
        ("{overrides: ['journal=glob(*)']}", "journal=glob(*) is Hydra sweep syntax"),
        ("{overrides: [workers=1], grid: {workers: [2, 4]}}", "workers is set in both overrides and grid"),
        ("{overrides: [workers=1, workers=2]}", "workers is set twice in overrides"),
        ("{grid: {workers: wal}}", "'wal' is one value: give a list of values"),
    ],
)
def test_sweep_syntax_is_refused_so_counts_are_exact(tmp_path: Path, sweep: str, expected: str) -> None:
    message = refused(tmp_path, f"stages: {{fast: {{sweep: {sweep}}}}}\n")
    assert message.startswith("plan p.yaml: stage 'fast': ") and expected in message


@pytest.mark.slow
def test_dry_run_counts_what_hydra_runs(tmp_path: Path) -> None:
    from qbench.app.preflight import preflight

    plan = load_plan(ROOT / "experiments" / "research.yaml")
    code, out = run_main(str(plan.path), "--dry-run", "--outputs", str(tmp_path / "o"))
    assert code == 0
    for name, stage in plan.stages.items():
        if not stage.is_sweep or stage.references():
            continue
        grid = [f"{k}={','.join(str(v) for v in values)}" for k, values in stage.grid.items()]
        counted = preflight(["-m", *stage.overrides, *grid])
        (block,) = (b for b in out.split("[plan ")[1:] if b.split(":")[0].split()[3] == name)
        assert block.rstrip().endswith(f"jobs: {counted}")


# ---------------------------------------------------------------- 4. references checked before anything runs

UPSTREAM = "stages: {a: {sweep: {grid: {workers: [1, 2]}}}, b: {needs: [a], sweep: {overrides: [%s]}}}\n"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "'workers=${a.best_workers@bogus=1}'",
            "${a.best_workers@bogus=1}: 'bogus' is not a column recommendations are grouped by "
            "(allowed: host, workload_kind, journal_mode, synchronous,",
        ),
        ("'workers=${a.best_workers@workers=4}'", "'workers' is not a column recommendations are grouped by"),
        (
            "'workers=${a.best_workers@journal_mode=bogus}'",
            "journal_mode='bogus' can match no row (allowed: wal, delete, truncate, persist)",
        ),
        ("'workers=${a.best_workers@tasks=many}'", "tasks='many' can match no row (expected an integer)"),
        (
            "'workers=${around:a.knee_workers}'",
            "${around:a.knee_workers} is a list of values: use it in `grid:`",
        ),
    ],
)
def test_bad_references_fail_at_load_not_after_the_upstream_ran(
    tmp_path: Path, override: str, expected: str
) -> None:
    message = refused(tmp_path, UPSTREAM % override)
    assert message.startswith("plan p.yaml: stage 'b': ") and expected in message


def test_good_selectors_load(tmp_path: Path) -> None:
    for where in ("journal_mode=wal", "synchronous=off", "host=db-1", "service_ms=1", "tasks=300"):
        load_plan(write_plan(tmp_path, UPSTREAM % f"'workers=${{a.best_workers@{where}}}'"))


@pytest.mark.parametrize(
    ("sweep", "expected"),
    [
        (
            "{overrides: ['workers=${a.claim_tx}']}",
            "workers=${a.claim_tx}: the value of a.claim_tx (e.g. 'immediate') can never fit: "
            "workers='immediate' is not allowed: expected an integer",
        ),
        (
            "{overrides: ['claim.tx=${a.best_workers@journal_mode=wal}']}",
            "claim.tx=${a.best_workers@journal_mode=wal}: the value of a.best_workers (e.g. '1') "
            "can never fit: claim.tx='1' is not allowed",
        ),
        (
            "{overrides: ['journal=${a.busy_policy}']}",
            "journal=${a.busy_policy}: the value of a.busy_policy (e.g. 'native') can never fit: "
            "journal='native'",
        ),
        (
            "{grid: {busy.timeout_ms: '${a.synchronous}'}}",
            "busy.timeout_ms: ${a.synchronous}: the value of a.synchronous (e.g. 'off') can never fit",
        ),
        (
            "{grid: {claim.tx: '${around:a.knee_workers}'}}",
            "claim.tx: ${around:a.knee_workers}: the value of a.knee_workers (e.g. '1') can never fit",
        ),
    ],
)
def test_a_reference_that_cannot_fit_its_key_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sweep: str, expected: str
) -> None:
    plan = write_plan(
        tmp_path,
        f"stages: {{a: {{sweep: {{grid: {{workers: [1, 2]}}}}}}, b: {{needs: [a], sweep: {sweep}}}}}\n",
    )
    outputs = tmp_path / "outputs"
    for flags in (["--dry-run"], []):
        code, out = run_main(str(plan), "--outputs", str(outputs), *flags)
        err = capsys.readouterr().err
        assert code == 2 and out == "" and not outputs.exists()
        assert err.startswith("qbench.plan: error: plan p.yaml: stage 'b': ") and expected in err
        assert err.count("\n") == 1


FITTING = """\
stages:
  a: {sweep: {grid: {workers: [1, 2]}}}
  b:
    needs: [a]
    sweep:
      overrides:
        - claim.tx=${a.claim_tx}
        - journal=${a.journal_mode}
        - synchronous=${a.synchronous}
        - busy.policy=${a.busy_policy}
        - pool=${a.pool_kind}
        - claim.batch=${a.claim_batch}
        - busy.timeout_ms=${a.busy_timeout_ms@journal_mode=wal}
        # bounded below by 10: the sample 1 does not fit, a larger recommendation would
        - metrics.sample_interval_ms=${a.best_workers}
      grid: {workers: "${beyond:a.knee_workers}", pool.size: "${around:a.pool_connections}"}
"""


def test_references_that_fit_their_keys_pass_the_check(tmp_path: Path) -> None:
    check_overrides(load_plan(write_plan(tmp_path, FITTING)))  # the shipped plans: test_dry_run_counts_...


def test_every_recommendation_field_has_typed_samples() -> None:
    from qbench.plan.checks import reference_samples
    from qbench.plan.spec import NUMERIC_FIELDS, RECOMMENDATION_FIELDS

    for name in RECOMMENDATION_FIELDS:
        samples = reference_samples(name)
        assert samples and all(s.isdigit() for s in samples) == (name in NUMERIC_FIELDS), name


def recommendations(path: Path, **columns: list[object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    base: dict[str, list[object]] = {"host": ["h"], "journal_mode": ["wal"], "best_throughput_tps": [100.0]}
    pd.DataFrame({**base, **columns}).to_parquet(path)


def runner_with_done_upstream(tmp_path: Path, downstream: str) -> tuple[Runner, Plan]:
    plan = load_plan(
        write_plan(
            tmp_path,
            "stages: {a: {sweep: {grid: {workers: [1, 2, 4]}}}, "
            f"b: {{needs: [a], sweep: {downstream}}}}}\n",
        )
    )
    runner = Runner(plan, tmp_path / "outputs")
    runner.resolved["a"] = runner.resolve(plan.stages["a"])
    runner.keys["a"] = runner.key(plan.stages["a"], runner.resolved["a"])
    runner._write_record("a", key=runner.keys["a"], status="done")
    return runner, plan


@pytest.mark.parametrize("bad", ["immediate,deferred", "${oc.env:HOME}", "{_target_: os.system}", "a b"])
def test_a_tampered_recommendation_never_reaches_a_command_line(tmp_path: Path, bad: str) -> None:
    runner, plan = runner_with_done_upstream(tmp_path, "{overrides: ['claim.tx=${a.claim_tx}']}")
    recommendations(runner.run_dir("a") / "recommendations.parquet", claim_tx=[bad])
    with pytest.raises(PlanError, match="not a plain value"):
        runner.resolve(plan.stages["b"])


def test_numeric_selectors_match_numbers(tmp_path: Path) -> None:
    path = tmp_path / "recommendations.parquet"
    recommendations(path, service_ms=[1.0], best_workers=[4])
    (ref,) = find_references("${a.best_workers@service_ms=1}")
    assert read_recommendation(path, ref) == 4


# ---------------------------------------------------------------- 5. cache keys over resolved values


def test_the_key_follows_resolved_values_not_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, plan = runner_with_done_upstream(
        tmp_path, "{overrides: ['workers=${a.best_workers}', tasks=60], grid: {claim.batch: [1, 2]}}"
    )
    path = runner.run_dir("a") / "recommendations.parquet"

    def key() -> str:
        return runner.key(plan.stages["b"], runner.resolve(plan.stages["b"]))

    recommendations(path, best_workers=[2])
    first = key()
    recommendations(path, best_workers=[4])  # the upstream found another answer: the stage re-runs
    assert key() != first
    recommendations(path, best_workers=[2])
    assert key() == first
    reordered = Runner(plan, tmp_path / "outputs")
    reordered.keys, reordered.resolved = runner.keys, runner.resolved
    stage = plan.stages["b"]
    swapped = type(stage)(stage.name, stage.needs, tuple(reversed(stage.overrides)), stage.grid)
    assert reordered.key(swapped, reordered.resolve(swapped)) == first, "override order changes nothing"
    flipped = type(stage)(stage.name, stage.needs, stage.overrides, {"claim.batch": [2, 1]})
    assert reordered.key(flipped, reordered.resolve(flipped)) != first, "grid order numbers the jobs"
    monkeypatch.setattr("qbench.plan.runner.conf_digest", lambda: "another conf/ tree")
    assert key() != first, "a changed default in conf/ changes what runs"


@pytest.mark.slow
def test_a_changed_upstream_value_reruns_the_stage_and_sweep_dir_stays_inside(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        f"""name: keyed
stages:
  a:
    sweep:
      overrides: [{SMALL}, hydra.sweep.dir=inner]
      grid: {{workers: [1, 2]}}
  b:
    needs: [a]
    sweep:
      overrides: ["workers=${{a.best_workers}}", {SMALL}]
""",
    )
    outputs = tmp_path / "outputs"
    code, out = run_main(str(path), "--outputs", str(outputs))
    assert code == 0, out
    (a_dir,) = (p for p in (outputs / "plans" / "keyed" / "a").iterdir() if p.is_dir())
    rec_path = a_dir / "inner" / "recommendations.parquet"
    assert rec_path.exists() and not (a_dir / "recommendations.parquet").exists()
    table = pd.read_parquet(rec_path)
    table["best_workers"] = 3 - table["best_workers"]  # the other worker count
    table.to_parquet(rec_path)
    code, out = run_main(str(path), "--outputs", str(outputs))
    assert code == 0, out
    assert "a: done, cached" in out and "stage 2/2 b: running 1 job(s)" in out
    assert len([p for p in (outputs / "plans" / "keyed" / "b").iterdir() if p.is_dir()]) == 2


# ---------------------------------------------------------------- 6. signals and concurrent runs


def test_a_signal_with_no_sweep_running_stops_the_plan_at_once() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with pytest.raises(PlanInterrupted) as info, process.Signals():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert info.value.signum == signal.SIGTERM
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before, "handlers restored"


def small_plan(tmp_path: Path) -> Path:
    return write_plan(
        tmp_path, f"stages: {{s: {{sweep: {{overrides: [{SMALL}], grid: {{workers: [1]}}}}}}}}\n"
    )


def test_a_recorded_sweep_that_still_runs_is_never_joined_by_a_second(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, outputs = small_plan(tmp_path), tmp_path / "outputs"
    record = outputs / "plans" / "p" / "s" / "stage.json"
    record.parent.mkdir(parents=True)
    me = os.getpid()  # a live process stands in for a sweep left running
    started = psutil.Process(me).create_time()
    record.write_text(json.dumps({"status": "running", "pid": me, "started": started, "key": "x"}))
    code, _ = run_main(str(path), "--outputs", str(outputs))
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"qbench.plan: error: plan p.yaml: stage 's': its sweep is still running (pid {me}); "
        f"wait for it or stop it (kill -TERM -- -{me}), then run the plan again"
    )
    code, out = run_main(str(path), "--outputs", str(outputs), "--status")
    assert out == f"s: running (pid {me})\n"


def test_one_process_at_a_time_runs_a_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, outputs = small_plan(tmp_path), tmp_path / "outputs"
    (outputs / "plans" / "p").mkdir(parents=True)
    with open(outputs / "plans" / "p" / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, _ = run_main(str(path), "--outputs", str(outputs))
    assert code == 2 and "already running in another process" in capsys.readouterr().err
    assert not (outputs / "plans" / "p" / "s").exists()


def sweep_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if marker in cmdline and "qbench.plan" not in cmdline:
            found.append(proc)
    return found


@pytest.mark.slow
def test_sigterm_stops_the_sweep_with_the_plan_and_a_rerun_resumes(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        """name: sig
stages:
  grid:
    sweep:
      overrides: [tasks=300, iterations=1, warmup=0, history_rows=10, ceiling.enabled=false,
                  service.kind=sleep, service.ms=5]
      grid: {claim.batch: [1, 2, 3]}
""",
    )
    outputs = tmp_path / "outputs"
    env = dict(os.environ, PYTHONPATH=str(ROOT), QBENCH_NO_PROGRESS="1")
    cmd = [sys.executable, "-m", "qbench.plan", str(path), "--outputs", str(outputs)]
    plan = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    root = outputs / "plans" / "sig" / "grid"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(root.glob("*/*/job_status.json")):
            time.sleep(0.05)
        assert list(root.glob("*/*/job_status.json")), "no job finished"
        record = json.loads((root / "stage.json").read_text())
        plan.send_signal(signal.SIGTERM)  # the plan process only, not its group
        _, err = plan.communicate(timeout=30)
    finally:
        if plan.poll() is None:
            os.killpg(plan.pid, signal.SIGKILL)
            plan.wait()
    assert plan.returncode == 130
    assert err.splitlines() == [
        "qbench.plan: interrupted by SIGTERM: stage 'grid' stopped with its sweep; "
        "run the plan again to resume it"
    ]
    assert not process.alive(record["pid"], record["started"])
    assert sweep_processes(str(root)) == [], "the child sweep outlived the plan"
    assert json.loads((root / "stage.json").read_text())["status"] == "interrupted"
    code, status = run_main(str(path), "--outputs", str(outputs), "--status")
    assert status == "grid: interrupted (re-run to resume)\n"

    code, out = run_main(str(path), "--outputs", str(outputs))
    assert code == 0, out
    assert "FAILED" not in out and "grid: done in" in out
    assert len(list(root.glob("*/*/metrics.parquet"))) == 3
    assert "already done with this config, kept" in (root / "stage.log").read_text()


def test_a_sweep_orphaned_by_a_killed_plan_is_let_stop_then_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        rec: dict[str, Any] = {
            "status": "running",
            "pid": sweep.pid,
            "started": process.started_at(sweep.pid),
            "plan_pid": gone.pid,
            "plan_started": 1.0,
        }
        assert process.orphaned(rec)
        assert not process.orphaned({**rec, "plan_pid": None}), "a record without its plan is never an orphan"
        mine = {**rec, "plan_pid": os.getpid(), "plan_started": process.started_at(os.getpid())}
        assert not process.orphaned(mine)
        monkeypatch.setattr(process, "ORPHAN_GRACE_S", 0.2)
        process.let_orphan_stop(rec)
        assert sweep.wait(timeout=5) == -signal.SIGKILL
    finally:
        if sweep.poll() is None:
            sweep.kill()
