"""Tests for qbench.run.sysinfo: the machine description recorded with each job."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from qbench.run import sysinfo
from qbench.run.sysinfo import (
    NETWORK_FS_TYPES,
    collect_sysinfo,
    filesystem_type,
    fsync_latency_us,
    is_network_filesystem,
    network_fs_warning,
)

EXPECTED_KEYS = {
    "host",
    "cpu_model",
    "cpu_count_logical",
    "cpu_count_physical",
    "memory_total_bytes",
    "os",
    "kernel",
    "python_version",
    "python_implementation",
    "sqlite_version",
    "sqlite_compile_options",
    "db_dir",
    "db_fs_type",
    "db_fs_network",
    "fsync_latency_us",
    "version_qbench",
    "version_hydra_core",
    "version_omegaconf",
    "version_aiosqlite",
    "version_psutil",
    "version_numpy",
    "version_pandas",
    "version_pyarrow",
    "version_scipy",
    "git_revision",
    "git_dirty",
    "collected_at",
}

# Mountpoints under a root that does not exist, so realpath() leaves them alone.
FAKE_ROOT = "/qbench-no-such-root"


def _fake_partitions(*mounts: tuple[str, str]) -> list[SimpleNamespace]:
    return [SimpleNamespace(device="dev", mountpoint=mp, fstype=fs, opts="rw") for mp, fs in mounts]


def _patch_partitions(monkeypatch: pytest.MonkeyPatch, *mounts: tuple[str, str]) -> None:
    parts = _fake_partitions(*mounts)
    monkeypatch.setattr(psutil, "disk_partitions", lambda all=False: parts)


@pytest.fixture(scope="module")
def info(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return collect_sysinfo(tmp_path_factory.mktemp("db"))


class TestCollectSysinfo:
    def test_has_exactly_the_documented_keys(self, info: dict[str, object]) -> None:
        assert set(info) == EXPECTED_KEYS

    def test_round_trips_through_json(self, info: dict[str, object]) -> None:
        assert json.loads(json.dumps(info)) == info

    def test_is_flat(self, info: dict[str, object]) -> None:
        for key, value in info.items():
            if key == "sqlite_compile_options":
                assert isinstance(value, list)
                assert all(isinstance(opt, str) for opt in value)
            else:
                assert value is None or isinstance(value, str | int | float | bool), key

    def test_sqlite_matches_the_linked_library(self, info: dict[str, object]) -> None:
        assert info["sqlite_version"] == sqlite3.sqlite_version
        options = info["sqlite_compile_options"]
        assert isinstance(options, list) and options
        # Every SQLite build reports its threading mode.
        assert any(str(opt).startswith("THREADSAFE=") for opt in options)

    def test_describes_the_db_directory(self, info: dict[str, object]) -> None:
        db_dir = info["db_dir"]
        assert isinstance(db_dir, str) and os.path.isabs(db_dir)
        assert os.listdir(db_dir) == []  # the fsync probe cleaned up
        assert isinstance(info["db_fs_type"], str) and info["db_fs_type"]
        assert isinstance(info["db_fs_network"], bool)
        latency = info["fsync_latency_us"]
        assert isinstance(latency, float) and latency > 0

    def test_machine_fields(self, info: dict[str, object]) -> None:
        assert isinstance(info["cpu_model"], str) and info["cpu_model"]
        assert info["cpu_count_logical"] == psutil.cpu_count()
        assert info["memory_total_bytes"] == psutil.virtual_memory().total
        assert info["version_psutil"] == psutil.__version__
        assert str(info["collected_at"]).endswith("+00:00")

    def test_git_fields_are_consistent(self, info: dict[str, object]) -> None:
        revision = info["git_revision"]
        if revision is None:
            assert info["git_dirty"] is None
        else:
            assert isinstance(revision, str) and len(revision) in (40, 64)
            assert isinstance(info["git_dirty"], bool)

    def test_relative_db_dir_is_made_absolute(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp_path / "rel").mkdir()
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sysinfo, "fsync_latency_us", lambda d: 1.0)
        assert collect_sysinfo("rel")["db_dir"] == str(tmp_path / "rel")

    def test_network_db_dir_is_flagged(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        _patch_partitions(monkeypatch, ("/", "ext4"), (os.path.realpath(tmp_path), "nfs4"))
        monkeypatch.setattr(sysinfo, "fsync_latency_us", lambda d: 1.0)
        result = collect_sysinfo(tmp_path)
        assert result["db_fs_type"] == "nfs4"
        assert result["db_fs_network"] is True
        assert network_fs_warning(result) is not None

    def test_broken_probes_do_not_raise(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        def boom(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("probe failed")

        monkeypatch.setattr(psutil, "disk_partitions", boom)
        monkeypatch.setattr(psutil, "virtual_memory", boom)
        monkeypatch.setattr(psutil, "cpu_count", boom)
        monkeypatch.setattr(subprocess, "run", boom)
        monkeypatch.setattr(importlib.metadata, "version", boom)
        result = collect_sysinfo(tmp_path / "missing")
        assert set(result) == EXPECTED_KEYS
        assert result["db_fs_type"] == "unknown"
        assert result["db_fs_network"] is False
        assert result["memory_total_bytes"] is None
        assert result["cpu_count_logical"] is None
        assert result["fsync_latency_us"] is None
        assert result["version_psutil"] is None
        assert result["git_revision"] is None and result["git_dirty"] is None

    def test_git_output_is_parsed(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        sha = "a" * 40

        def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
            out = f"{sha}\n" if "rev-parse" in cmd else " M qbench/x.py\n"
            return subprocess.CompletedProcess(cmd, 0, stdout=out)

        monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/git")
        monkeypatch.setattr(subprocess, "run", fake_run)
        monkeypatch.setattr(sysinfo, "fsync_latency_us", lambda d: 1.0)
        result = collect_sysinfo(tmp_path)
        assert result["git_revision"] == sha
        assert result["git_dirty"] is True

    def test_failing_git_gives_none(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
            return subprocess.CompletedProcess(cmd, 128, stdout="HEAD\n")

        monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/git")
        monkeypatch.setattr(subprocess, "run", fake_run)
        monkeypatch.setattr(sysinfo, "fsync_latency_us", lambda d: 1.0)
        result = collect_sysinfo(tmp_path)
        assert result["git_revision"] is None and result["git_dirty"] is None


class TestFsyncLatency:
    def test_positive_and_leaves_no_file(self, tmp_path: Path) -> None:
        latency = fsync_latency_us(tmp_path, samples=4)
        assert isinstance(latency, float) and latency > 0
        assert list(tmp_path.iterdir()) == []

    def test_missing_directory_gives_none(self, tmp_path: Path) -> None:
        assert fsync_latency_us(tmp_path / "does" / "not" / "exist") is None

    def test_failing_fsync_gives_none_and_removes_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def refuse(fd: int) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "fsync", refuse)
        assert fsync_latency_us(tmp_path, samples=2) is None
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.parametrize(("samples", "size_bytes"), [(0, 4096), (4, 0)])
    def test_rejects_non_positive_arguments(self, tmp_path: Path, samples: int, size_bytes: int) -> None:
        with pytest.raises(ValueError, match="samples"):
            fsync_latency_us(tmp_path, samples=samples, size_bytes=size_bytes)


@pytest.mark.skipif(os.name != "posix", reason="fake mountpoints are POSIX paths")
class TestFilesystemType:
    def test_longest_mountpoint_wins(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # Listed shortest-last so that "first match" or "last match" would both fail.
        _patch_partitions(
            monkeypatch,
            (f"{FAKE_ROOT}/mnt", "xfs"),
            (f"{FAKE_ROOT}/mnt/share", "nfs4"),
            ("/", "ext4"),
        )
        assert filesystem_type(f"{FAKE_ROOT}/mnt/share/runs/db") == "nfs4"
        assert filesystem_type(f"{FAKE_ROOT}/mnt/share") == "nfs4"
        assert filesystem_type(f"{FAKE_ROOT}/mnt/other") == "xfs"
        assert filesystem_type("/qbench-elsewhere/db") == "ext4"

    def test_matches_whole_path_components(self, monkeypatch: pytest.MonkeyPatch) -> None:
        _patch_partitions(monkeypatch, ("/", "ext4"), (f"{FAKE_ROOT}/share", "nfs4"))
        assert filesystem_type(f"{FAKE_ROOT}/shared/db") == "ext4"

    def test_later_mount_over_same_point_wins(self, monkeypatch: pytest.MonkeyPatch) -> None:
        _patch_partitions(monkeypatch, ("/", "ext4"), (FAKE_ROOT, "ext4"), (FAKE_ROOT, "cifs"))
        assert filesystem_type(f"{FAKE_ROOT}/db") == "cifs"

    def test_unknown_when_nothing_matches_or_psutil_fails(self, monkeypatch: pytest.MonkeyPatch) -> None:
        _patch_partitions(monkeypatch, (f"{FAKE_ROOT}/a", "ext4"))
        assert filesystem_type(f"{FAKE_ROOT}/b") == "unknown"
        _patch_partitions(monkeypatch, ("/", ""))
        assert filesystem_type("/anything") == "unknown"

        def boom(all: bool = False) -> list[SimpleNamespace]:
            raise PermissionError("no /proc")

        monkeypatch.setattr(psutil, "disk_partitions", boom)
        assert filesystem_type("/anything") == "unknown"

    def test_real_tmp_path(self, tmp_path: Path) -> None:
        fs_type = filesystem_type(tmp_path)
        assert isinstance(fs_type, str) and fs_type and fs_type != "unknown"


@pytest.mark.parametrize(
    ("fs_type", "expected"),
    [
        ("nfs", True),
        ("nfs4", True),
        ("NFS4", True),
        ("cifs", True),
        ("smb3", True),
        ("fuse.sshfs", True),
        ("9p", True),
        ("ceph", True),
        ("lustre", True),
        ("ext4", False),
        ("xfs", False),
        ("btrfs", False),
        ("tmpfs", False),
        ("overlay", False),
        ("apfs", False),
        ("NTFS", False),
        ("unknown", False),
        ("", False),
    ],
)
def test_is_network_filesystem(fs_type: str, expected: bool) -> None:
    assert is_network_filesystem(fs_type) is expected


def test_network_fs_types_are_lowercase() -> None:
    # is_network_filesystem lower-cases its input, so an upper-case entry would never match.
    assert all(name == name.lower().strip() for name in NETWORK_FS_TYPES)


class TestNetworkFsWarning:
    def test_names_fs_type_and_directory(self) -> None:
        info = {"db_fs_network": True, "db_fs_type": "nfs4", "db_dir": "/mnt/share/q"}
        warning = network_fs_warning(info)
        assert warning is not None
        assert "nfs4" in warning
        assert "/mnt/share/q" in warning
        assert "lock" in warning.lower() and "cannot be trusted" in warning
        assert "\n" not in warning  # one paragraph

    @pytest.mark.parametrize(
        "info",
        [
            {"db_fs_network": False, "db_fs_type": "ext4", "db_dir": "/data"},
            {"db_fs_network": "false", "db_fs_type": "ext4", "db_dir": "/data"},
            {},
        ],
    )
    def test_none_for_local_or_missing(self, info: dict[str, object]) -> None:
        assert network_fs_warning(info) is None
