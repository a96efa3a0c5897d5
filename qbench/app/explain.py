"""One line for whatever Hydra or OmegaConf says about a command line.

Hydra's messages span several lines, name Python types and sometimes no key
at all. :func:`explain` turns each into ``key=value is not allowed: what is
allowed``, the form of every other refusal (:class:`~qbench.errors.ConfigError`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from hydra.core.global_hydra import GlobalHydra

from qbench.app.paths import conf_dir
from qbench.app.plugins import missing_plugin
from qbench.app.redact import REDACTED
from qbench.errors import ConfigError

_UNKNOWN = "unknown key (python -m qbench --cfg job lists every key)"
_UNKNOWN_HYDRA = "unknown key (python -m qbench --cfg hydra lists Hydra's keys)"
_MAX_LINE = 400


def one_line(text: str) -> str:
    """The first non-empty line of ``text``, never empty, at most a few hundred characters."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = lines[0] if lines else "invalid command line"
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 3] + "..."


def unknown_key(key: str) -> str:
    return _UNKNOWN_HYDRA if key.startswith("hydra.") else _UNKNOWN


def group_options(group: str) -> list[str]:
    """The options of config group ``group`` (qbench's and Hydra's), empty when it is no group."""
    if GlobalHydra.instance().is_initialized():
        try:
            return sorted(GlobalHydra.instance().config_loader().get_group_options(group))
        except Exception:  # an odd group name: no options to offer
            return []
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml")) if group else []


def group_refusal(group: str, option: object) -> ConfigError:
    """``group=option`` is no option of the group: name the ones there are."""
    options = group_options(group)
    if not options:
        return ConfigError(group, option, f"no such option in group {group}")
    allowed = f"allowed: {', '.join(options)}"
    if isinstance(option, str) and option.lower() in options:
        allowed += " (in lower case)"
    return ConfigError(group, option, allowed)


_REASONS: list[tuple[str, str]] = [
    ("could not be converted to Integer", "expected an integer"),
    ("could not be converted to Float", "expected a number"),
    ("could not be converted to Boolean", "expected true or false"),
    ("is not a valid bool", "expected true or false"),
    ("is not Optional", "expected a value, not null"),
    ("is not in struct", "not in the config (add a new key with +KEY=VALUE)"),
    ("Cannot convert 'list'", "expected one value, not a list"),
    ("Cannot convert 'dict'", "expected one value, not a mapping"),
    ("is not a subclass of", "holds keys, not one value (set KEY.NAME=VALUE)"),
    ("Invalid type assigned", "holds keys, not one value (set KEY.NAME=VALUE)"),
]


def _reason(msg: str, key: str) -> str:
    first = one_line(msg)
    for needle, reason in _REASONS:
        if needle in first:
            return reason
    if first.startswith("Key") and " not in " in first:
        return unknown_key(key)
    missing_env = re.search(r"Environment variable '([^']+)' not found", first)
    if missing_env:
        return f"environment variable {missing_env.group(1)} is not set"
    choices = re.search(r"Invalid value .*, expected one of \[(.*)\]", first)
    if choices:
        return f"allowed: {choices.group(1)}"
    return first


def _value_of(key: str, overrides: Sequence[str]) -> str:
    value = "?"
    for item in overrides:
        name, _, val = item.lstrip("+~").partition("=")
        if name == key:
            value = val
    return value


def _from_cause(exc: BaseException, overrides: Sequence[str]) -> str | None:
    cause = exc.__cause__ or exc.__context__
    full_key = getattr(cause, "full_key", None) or getattr(exc, "full_key", None)
    if not full_key:
        return None
    key = str(full_key)
    value = _value_of(key, overrides)
    reason = _reason(str(getattr(cause, "msg", "") or cause or exc), key)
    if "oc.env" in value:  # Hydra's text may hold the resolved value, which comes from the environment
        reason = re.sub(r"'[^']*'", REDACTED, reason)
    return str(ConfigError(key, value, reason))


def _bad_group_value(overrides: Sequence[str]) -> str | None:
    """The override that gives a config group something other than an option's name."""
    for item in overrides:
        key, _, value = item.partition("=")
        if not key.strip("+~") or key.lstrip("+~").startswith("@"):
            return f"{item!r} is not allowed: expected KEY=VALUE or GROUP=OPTION"
        options = group_options(key.lstrip("+~"))
        if options and value.strip() not in options:
            return str(group_refusal(key.lstrip("+~"), value))
    return None


def _patterns() -> list[tuple[str, Callable[[re.Match[str]], str]]]:
    return [
        (r"Could not find '(.+)/([^'/]*)'", lambda m: str(group_refusal(m[1], m[2]))),
        (
            r"Ambiguous value for argument '([^'=]+)=([^']*)'",
            lambda m: str(ConfigError(m[1], m[2], "a list of values is a sweep: add --multirun (-m)")),
        ),
        (
            r"Sweeping over Hydra's configuration is not supported : '\+*([^'=]+)=([^']*)'",
            lambda m: str(
                ConfigError(m[1], m[2], "Hydra's own settings cannot be swept (quote it: KEY='a,b')")
            ),
        ),
        (
            r"Multiple values for ([^.\s]+)\. To override a value use 'override \S+: ([^']*)'",
            lambda m: str(ConfigError(f"+{m[1]}", m[2], f"{m[1]} is already chosen: write {m[1]}={m[2]}")),
        ),
        (
            r"Could not append to config\. An item is already at '([^']+)'",
            lambda m: f"+{m[1]} is not allowed: {m[1]} is already in the config (write {m[1]}=VALUE, no +)",
        ),
        (
            r"Could not delete from config\. '([^']+)' does not exist",
            lambda m: f"~{m[1]} is not allowed: {unknown_key(m[1])}",
        ),
        (
            r"force-add of config groups is not supported: '(\+\+[^'=]+)=([^']*)'",
            lambda m: str(ConfigError(m[1], m[2], f"a config group is chosen with {m[1][2:]}=OPTION")),
        ),
        (
            r"Could not delete '([^'=]+)=([^']*)'\. No match in the defaults list",
            lambda m: f"~{m[1]}={m[2]} is not allowed: {m[1]} is not {m[2]} here (~{m[1]} drops it)",
        ),
        (
            r"Could not delete from config\. The value of '([^']+)' is (.*) and not (.*)\.$",
            lambda m: f"~{m[1]}={m[3]} is not allowed: {m[1]} is {m[2]} (~{m[1]} removes it, whatever it is)",
        ),
        (
            r"Sweep parameters '([^'=]+)=([^']*)' requires --multirun",
            lambda m: str(ConfigError(m[1], m[2], "a sweep: add --multirun (-m)")),
        ),
        (
            r"Override (\S+) looks like a config group override, but config group '([^']*)' does not exist",
            lambda m: f"{m[1]!r} is not allowed: there is no config group {m[2]!r}",
        ),
        (r"Error parsing override '([^']*)'", lambda m: f"{m[1]!r} is not allowed: expected KEY=VALUE"),
        (r"LexerNoViableAltException: (.*)", lambda m: f"{m[1]!r} is not allowed: expected KEY=VALUE"),
    ]


def _not_installed(text: str, overrides: Sequence[str]) -> str | None:
    """A launcher or sweeper plugin (or a preset built on one) that is not installed: the extra to install."""
    found = re.search(r"Could not (?:find|load) '(hydra/(?:launcher|sweeper))/([^'/]*)'", text)
    if not found:
        return None
    chosen = _value_of(found[1], overrides)
    return missing_plugin(found[1], found[2], None if chosen == "?" else chosen)


_SEARCH_SPACE = "hydra.sweeper.search_space"


def _search_space(text: str, overrides: Sequence[str]) -> str | None:
    """The optuna sweeper's ``search_space`` (null by default, so Hydra cannot set a key under it
    from the command line, and says only "Unexpected type for root"): say how a search space is
    given instead. Only for that error: any other one is about something else."""
    if "Unexpected type for root" not in text and _SEARCH_SPACE not in text:
        return None
    for override in overrides:
        key, eq, value = override.lstrip("+~").partition("=")
        if eq and (key == _SEARCH_SPACE or key.startswith(_SEARCH_SPACE + ".")):
            return str(
                ConfigError(
                    key,
                    value,
                    "give the search space as sweep values on the command line"
                    " (workers=range(1,20) 'journal=choice(wal,delete)') or under hydra.sweeper.params",
                )
            )
    return None


def explain(exc: BaseException, overrides: Sequence[str]) -> str:
    """One line for a Hydra/OmegaConf composition error, naming the key where one is known."""
    text = str(exc)
    specific = _not_installed(text, overrides) or _search_space(text, overrides)
    if specific:
        return specific
    unparsed = getattr(exc, "override", None)  # OverrideParseException: the line it could not parse
    if isinstance(unparsed, str) and not text.startswith(("Error parsing", "LexerNoViable")):
        return one_line(f"{unparsed!r} is not allowed: expected KEY=VALUE (Hydra: {one_line(text)})")
    for pattern, build in _patterns():
        match = re.search(pattern, text)
        if match:
            return one_line(build(match))
    from_cause = _from_cause(exc, overrides)
    if from_cause:
        return one_line(from_cause)
    cannot = re.search(r"Could not override '([^']+)'", text)
    if cannot:
        return f"{cannot[1]} is not allowed: {unknown_key(cannot[1])}"
    if "Config group override must be" in text:
        return one_line(_bad_group_value(overrides) or text)
    return one_line(text) if text.strip() else f"Hydra could not compose {' '.join(overrides)!r}"
