"""Atomic writes: the mode is set before the data lands, and an existing key is never clobbered."""

from __future__ import annotations

import os
import stat

import pytest

from runbook.files import write_atomic, write_new_atomic


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
