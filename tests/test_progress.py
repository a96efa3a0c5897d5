from __future__ import annotations

import io

import pytest

from qbench.run.progress import Progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_silent_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("QBENCH_NO_PROGRESS", raising=False)
    stream = io.StringIO()
    progress = Progress("[job 0]", stream)
    progress.update("measure 1/10")
    progress.clear()
    assert not progress.enabled and stream.getvalue() == ""


def test_silent_in_ci_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    stream = FakeTerminal()
    Progress("[job 0]", stream).update("measure 1/10")
    assert stream.getvalue() == ""


def test_rewrites_one_line_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("QBENCH_NO_PROGRESS", raising=False)
    stream = FakeTerminal()
    progress = Progress("[job 3]", stream)
    progress.update("measure 2/10: 500/1000 tasks, 2,500 tasks/s")
    progress.update("measure 2/10: 900/1000 tasks")
    progress.clear()
    out = stream.getvalue()
    assert "\n" not in out
    assert "[job 3] measure 2/10: 500/1000 tasks, 2,500 tasks/s" in out
    assert out.endswith("\r")
