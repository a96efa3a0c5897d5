"""The package's shape: short functions and modules, every named query used and defined."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from qbench.run.queues.sql import queries

PACKAGE = Path(__file__).resolve().parents[1] / "qbench"
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_function_over_60_lines() -> None:
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({length} lines)")
    assert long == []


def test_no_module_over_400_lines() -> None:
    long = [
        f"{path.relative_to(PACKAGE)} ({n} lines)"
        for path in _sources()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    ]
    assert long == []


def test_every_named_query_is_used_and_every_used_name_exists() -> None:
    used: set[str] = set()
    for path in _sources():
        used |= set(re.findall(r"\bquery\(\"(\w+)\"\)", path.read_text(encoding="utf-8")))
    defined = set(queries())
    assert used - defined == set(), "used but not defined in queries.sql or schema.sql"
    assert defined - used == set(), "defined but never used"


def test_refusing_a_command_line_loads_no_analysis_or_measurement_code() -> None:
    """Preflight answers in a fraction of a second: pandas, Arrow, scipy and the job load only when used."""
    import subprocess
    import sys

    heavy = ("pandas", "pyarrow", "scipy", "matplotlib", "qbench.run.job")
    code = (
        "import sys, qbench.app.main, qbench.app.preflight; "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
