"""The suite reads nothing beside the repository: a clone alone passes."""

from __future__ import annotations

import pytest

from tests.conftest import REPO


def test_a_read_beside_the_repository_is_refused() -> None:
    beside = REPO.parent / "shared" / "fixtures" / "osquery-logs" / "any.log"
    with pytest.raises(PermissionError, match="outside the repository"):
        beside.open()  # refused before the file system is asked


def test_reads_inside_the_repository_work() -> None:
    assert (REPO / "tests" / "fixtures" / "osquery-logs" / "SOURCES.md").read_text()
