"""Atomic writes and folders: modes are explicit whatever the umask, an existing key is never clobbered, and
a crashed write's temp file is removed by the next write."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from runbook.work.files import (
    PUBLIC,
    create_with_mode,
    is_write_temp,
    make_private_dir,
    stale_temps,
    write_atomic,
    write_new_atomic,
)


def test_write_atomic_replaces_with_the_given_mode_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "deep" / "secret.txt"
    write_atomic(target, "one")
    write_atomic(target, "two", 0o640)
    assert target.read_text() == "two"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["secret.txt"]


def test_write_new_atomic_refuses_to_overwrite(tmp_path):
    target = tmp_path / "server.key"
    write_new_atomic(target, b"original")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_new_atomic(target, b"replacement")
    assert target.read_bytes() == b"original"
    assert [p.name for p in tmp_path.iterdir()] == ["server.key"]


@pytest.fixture
def umask_000():
    """Everything the test creates gets all the bits the code asks for: its modes must be explicit."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_folders_made_for_a_write_are_0700_and_files_keep_their_mode_under_umask_000(tmp_path, umask_000):
    write_atomic(tmp_path / "work" / "keys" / "server.key", "key")
    write_atomic(tmp_path / "work" / "phases" / "certificate.json", "{}", PUBLIC)
    assert [_mode(tmp_path / "work" / name) for name in ("", "keys", "phases")] == [0o700] * 3
    assert _mode(tmp_path / "work" / "keys" / "server.key") == 0o600
    assert _mode(tmp_path / "work" / "phases" / "certificate.json") == 0o644


def test_make_private_dir_leaves_existing_folders_alone_unless_asked_to_tighten(tmp_path, umask_000):
    shared = tmp_path / "project"
    shared.mkdir(mode=0o755)
    make_private_dir(shared / "runs" / "20260101-000000")
    assert _mode(shared) == 0o755
    assert _mode(shared / "runs") == _mode(shared / "runs" / "20260101-000000") == 0o700
    make_private_dir(shared, tighten=True)
    assert _mode(shared) == 0o700
    with pytest.raises(FileExistsError):
        make_private_dir(shared / "runs", exist_ok=False)


def test_create_with_mode_makes_a_later_plain_open_write_keep_the_mode(tmp_path, umask_000):
    notebook = create_with_mode(tmp_path / "runs" / "stamp" / "01_certificate.ipynb")
    with open(notebook, "w") as fh:  # what papermill does with an executed notebook
        fh.write("{}")
    assert _mode(notebook) == 0o600 and _mode(notebook.parent) == 0o700


def test_temp_file_of_a_crashed_write_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "server.key"
    crashed = tmp_path / f".server.key.{_dead_pid()}.a1b2c3d4.tmp"
    legacy = tmp_path / ".server.key.k9x8y7w6.tmp"  # named before temp files carried their writer's pid
    running = tmp_path / f".server.key.{os.getppid()}.e5f6g7h8.tmp"  # a live writer's: left alone
    other = tmp_path / f".server.key.bak.{_dead_pid()}.i9j0k1l2.tmp"  # another target's
    for temp in (crashed, legacy, running, other):
        temp.write_text("half a key")
    assert stale_temps(target) == sorted([crashed, legacy])
    write_new_atomic(target, b"key")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name, running.name, "server.key"])
    assert all(is_write_temp(p) for p in (crashed, legacy, running, other)) and not is_write_temp(target)
