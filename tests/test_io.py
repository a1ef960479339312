"""Atomic writes: the old content survives a failure, the new one replaces it whole, leftovers are swept."""

from __future__ import annotations

import pytest

from faults import killed, run
from vivid_med.io import atomic_dir, atomic_path, same_file, write_json, write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_text(tmp_path / "out.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_a_folder_is_swapped_whole_and_gets_the_umask_mode(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "a").write_text("old")
    with atomic_dir(tmp_path / "store") as tmp:
        (tmp / "b").write_text("new")
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["b"]
    (tmp_path / "plain").mkdir()
    assert (tmp_path / "store").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "store"]  # the old folder is gone


def test_a_sigkill_before_the_commit_keeps_the_old_file_and_the_next_write_sweeps(tmp_path):
    path = write_json(tmp_path / "m.json", {"v": 1})
    code = f"from vivid_med.io import write_json; write_json({str(path)!r}, {{'v': 2}})"
    assert killed(run(tmp_path, "-c", code, failpoint="commit:m.json"))
    assert path.read_text() == '{"v": 1}\n' and len(list(tmp_path.glob(".m.json.*.tmp"))) == 1
    write_json(path, {"v": 3})
    assert path.read_text() == '{"v": 3}\n' and not list(tmp_path.glob(".m.json.*.tmp"))


def test_same_file_sees_through_links(tmp_path):
    (tmp_path / "a").write_text("x")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert same_file(tmp_path / "a", tmp_path / "b") and not same_file(tmp_path / "a", tmp_path / "c")
