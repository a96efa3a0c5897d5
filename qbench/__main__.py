"""``python -m qbench``: the Hydra entry point, the only module that sees Hydra's config objects.

Before Hydra creates any directory, every job of the requested run or sweep
is composed and validated (:func:`preflight`), so a user mistake gets one
line naming the key, the value and what is allowed, exit status 2, and
nothing written. Each job then runs with a frozen, validated
:class:`~qbench.config.Config`. The process exits 1 when any job failed,
naming each.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, cast

import hydra
from omegaconf import DictConfig, OmegaConf

from qbench._paths import conf_dir
from qbench.config import Config, register_configs, validate
from qbench.errors import ConfigError, QbenchError

log = logging.getLogger("qbench")

# Hydra flags that only show things: no job runs, nothing to validate.
_SHOW_ONLY = ("help", "hydra_help", "cfg", "info", "shell_completion", "resolve")
# (job dir, reason) of jobs that failed in this process, for failures no status file can show
_FAILED_HERE: list[tuple[str, str]] = []
_ENV_MARK = "${oc.env:"
REDACTED = "<from environment>"
# Set by plans: a job whose directory already holds its finished results is kept, not re-run.
RESUME_ENV = "QBENCH_RESUME"


class PreflightError(Exception):
    """A mistake in the command line, in one line."""


def _omegaconf_reason(msg: str) -> str:
    first = msg.strip().splitlines()[0] if msg.strip() else "invalid value"
    if "could not be converted to Integer" in first:
        return "expected an integer"
    if "could not be converted to Float" in first:
        return "expected a number"
    if "could not be converted to Boolean" in first:
        return "expected true or false"
    if "not in" in first and first.startswith("Key"):
        return "unknown key (python -m qbench --cfg job lists every key)"
    return first


def _group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def _explain(exc: BaseException, overrides: list[str]) -> str:
    """One line for a Hydra/OmegaConf composition error."""
    text = str(exc)
    missing = re.search(r"Could not find '(.+)/([^'/]+)'", text)
    if missing:
        group, option = missing.groups()
        options = _group_options(group)
        allowed = f"allowed: {', '.join(options)}" if options else f"no such option in group {group}"
        return str(ConfigError(group, option, allowed))
    cause = exc.__cause__ or exc.__context__
    full_key = getattr(cause, "full_key", None) or getattr(exc, "full_key", None)
    if full_key:
        value: object = "?"
        for item in overrides:
            key, _, val = item.lstrip("+~").partition("=")
            if key == full_key:
                value = val
        reason = _omegaconf_reason(str(getattr(cause, "msg", "") or cause or text))
        return str(ConfigError(str(full_key), value, reason))
    ambiguous = re.search(r"Ambiguous value for argument '([^'=]+)=([^']*)'", text)
    if ambiguous:
        key, value = ambiguous.groups()
        return str(ConfigError(key, value, "a list of values is a sweep: add --multirun (-m)"))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def to_config(dcfg: DictConfig) -> Config:
    """The composed DictConfig as qbench's frozen Config (not yet validated)."""
    obj = OmegaConf.to_object(dcfg)
    if not isinstance(obj, Config):
        raise ConfigError("config", type(obj).__name__, "expected qbench's Config schema")
    return obj


def env_paths(dcfg: DictConfig) -> list[tuple[str, ...]]:
    """Paths of the values that come from ``${oc.env:...}``: never copied into results."""
    paths: list[tuple[str, ...]] = []

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*path, str(key)))
        elif isinstance(node, str) and _ENV_MARK in node:
            paths.append(path)

    walk(OmegaConf.to_container(dcfg, resolve=False), ())
    return paths


def config_yaml(dcfg: DictConfig, redact: list[tuple[str, ...]]) -> str:
    """The resolved config as YAML, with the values at ``redact`` replaced."""
    resolved = OmegaConf.to_container(dcfg, resolve=True)
    for path in redact:
        node: Any = resolved
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = REDACTED
    return OmegaConf.to_yaml(OmegaConf.create(resolved))


def preflight(argv: list[str]) -> int:
    """Compose and validate every job the command line asks for; returns how many.

    Raises:
        PreflightError: the first mistake, in one line.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path, get_args_parser
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf import open_dict, read_write
    from omegaconf.errors import OmegaConfBaseException

    args, _ = get_args_parser().parse_known_args(argv)
    if any(getattr(args, flag, None) for flag in _SHOW_ONLY):
        return 0
    overrides = list(args.overrides)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        if args.multirun:
            try:
                combos = BasicSweeper.split_arguments(parsed, None)[0]
            except HydraException:
                # a sweep the basic sweeper cannot expand (e.g. an optimiser's interval):
                # check the fixed values, the jobs check the rest
                combos = [[o.input_line or "" for o in parsed if not o.is_sweep_override()]]
        else:
            combos = [overrides]
    except HydraException as exc:
        raise PreflightError(_explain(exc, overrides)) from None

    # Compose as hydra.main would: qbench's conf/ first, then --config-dir.
    search_path = create_config_search_path(str(conf_dir()))
    if args.config_dir:
        user_dir = Path(args.config_dir).expanduser().resolve()
        if not user_dir.is_dir():
            raise PreflightError(
                str(ConfigError("--config-dir", args.config_dir, "expected an existing directory"))
            )
        search_path.prepend(
            provider="command-line",
            path=f"file://{user_dir}",
            anchor=SearchPathQuery(provider="schema"),
        )
    GlobalHydra.instance().clear()
    try:
        composer = Hydra.create_main_hydra2(task_name="qbench", config_search_path=search_path)
        for combo in combos:
            try:
                dcfg = composer.compose_config(
                    args.config_name or "config",
                    list(combo),
                    run_mode=RunMode.MULTIRUN if args.multirun else RunMode.RUN,
                    with_log_configuration=False,
                )
                with read_write(dcfg), open_dict(dcfg):
                    del dcfg["hydra"]
                validate(to_config(dcfg))
            except ConfigError as exc:
                raise PreflightError(str(exc)) from None
            except (HydraException, OmegaConfBaseException) as exc:
                raise PreflightError(_explain(exc, list(combo))) from None
    finally:
        GlobalHydra.instance().clear()
    return len(combos)


def _resume(job_dir: Path, resolved_yaml: str) -> float | None:
    """A finished job with the same config in ``job_dir``: its median throughput; else None.

    Anything else there (a failed or interrupted job, another config) is moved aside,
    never overwritten, so the job can run again.
    """
    from qbench.results import META_CONFIG, METRICS_FILE, STATUS_FILE, read_metadata, read_status

    metrics = job_dir / METRICS_FILE
    status = read_status(job_dir) or {}
    if metrics.exists():
        try:
            same = read_metadata(metrics).get(META_CONFIG) == resolved_yaml
        except QbenchError:
            same = False
        if same and status.get("status") == "ok":
            median = status.get("throughput_tps_median")
            return float(median) if median is not None else float("nan")
        stamp = time.strftime("%Y%m%dT%H%M%S")
        metrics.rename(job_dir / f"{METRICS_FILE}.superseded-{stamp}")
    (job_dir / STATUS_FILE).unlink(missing_ok=True)
    return None


def _task(dcfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from qbench.job import run_job
    from qbench.results import write_status

    hc = HydraConfig.get()
    job_dir = Path(hc.runtime.output_dir)
    job_num = int(OmegaConf.select(cast(DictConfig, hc), "job.num", default=0) or 0)
    label = hc.job.override_dirname or "defaults"
    try:
        cfg = validate(to_config(dcfg))
        redact = env_paths(dcfg)
    except ConfigError as exc:
        log.error("qbench: %s", exc)
        write_status(job_dir, {"status": "failed", "reason": str(exc), "job_num": job_num})
        return None
    resolved_yaml = config_yaml(dcfg, redact)
    if os.environ.get(RESUME_ENV) == "1":
        kept = _resume(job_dir, resolved_yaml)
        if kept is not None:
            log.info("job %d (%s): already done with this config, kept", job_num, label)
            return kept
    try:
        outcome = run_job(
            cfg,
            job_dir,
            job_num=job_num,
            config_yaml=resolved_yaml,
            redacted={"_".join(path): REDACTED for path in redact},
        )
    except QbenchError as exc:  # e.g. results already there: nothing is overwritten
        log.error("job %d (%s) failed: %s", job_num, label, exc)
        _FAILED_HERE.append((str(job_dir), str(exc)))
        return None
    measured = [r for r in outcome.rows if r["phase"] == "measure"]
    if outcome.ok and measured:
        last = measured[-1]
        p99 = [r["e2e_latency_p99_ms"] for r in measured if r.get("e2e_latency_p99_ms") is not None]
        log.info(
            "job %d (%s): %s tasks/s median of %d iterations, ceiling %s tasks/s, busy rate %.3f%%, "
            "e2e p99 %s, audit ok -> %s",
            job_num,
            label,
            f"{outcome.throughput_tps:,.0f}" if outcome.throughput_tps else "n/a",
            len(measured),
            f"{last['ceiling_tps']:,.0f}" if last.get("ceiling_tps") else "n/a",
            100.0 * sum(r["busy_total"] for r in measured) / max(1, sum(r["transactions"] for r in measured)),
            f"{sorted(p99)[len(p99) // 2]:.1f} ms" if p99 else "n/a",
            outcome.metrics_path,
        )
    else:
        log.error("job %d (%s) FAILED: %s", job_num, label, outcome.reason)
    return outcome.throughput_tps


def main() -> None:
    """Validate the command line, run the job or sweep through Hydra, exit 1 if any job failed."""
    register_configs()
    try:
        preflight(sys.argv[1:])
    except PreflightError as exc:
        print(f"qbench: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except FileNotFoundError as exc:
        print(f"qbench: error: {exc}", file=sys.stderr)
        sys.exit(2)

    from qbench import callbacks

    callbacks.FAILED_JOBS.clear()
    entry = hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(_task)
    entry()
    failed = dict(callbacks.FAILED_JOBS)
    failed.update(_FAILED_HERE)
    if failed:
        print(f"qbench: {len(failed)} job(s) failed:", file=sys.stderr)
        for job_dir, reason in sorted(failed.items()):
            print(f"  {job_dir}: {reason}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
