"""``make_dirs`` sets mode and owner on the directory itself, never through a symbolic
link planted at its path (a predictable /tmp name must not hand root's target away)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from failback.hosts import LocalHost


def test_a_symbolic_link_at_the_path_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.mkdir(mode=0o755)
    link = tmp_path / "failback-drill-12-abcd"
    link.symlink_to(target)
    with pytest.raises(OSError):
        LocalHost().make_dirs(str(link), mode=0o700)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o755


def test_a_new_directory_gets_its_mode(tmp_path: Path) -> None:
    made = tmp_path / "a" / "b"
    LocalHost().make_dirs(str(made), mode=0o700)
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700
    LocalHost().make_dirs(str(made), mode=0o750)  # again: idempotent, mode set again
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o750
