"""Compact rows read exactly like the dicts they replace, and share what repeats."""

from __future__ import annotations

import pytest

from fleetctl.detection import compact as compact_module
from fleetctl.detection.compact import CompactRow, compact


def test_a_compact_row_reads_like_its_dict() -> None:
    row = {"pid": "4242", "name": "bash", "path": "/usr/bin/bash", "cmdline": ""}
    got = compact(dict(row))
    assert got == row and dict(got) == row
    assert list(got) == list(row) and len(got) == 4
    assert got["name"] == "bash" and got.get("cmdline") == ""
    assert got.get("parent") is None and got.get("parent", "") == ""
    assert "pid" in got and "parent" not in got
    assert compact(got) is got


def test_rows_of_one_shape_share_their_columns_and_repeated_values() -> None:
    a = compact({"pid": "1".zfill(3), "name": "".join(["sys", "temd"])})
    b = compact({"pid": "2".zfill(3), "name": "".join(["sys", "temd"])})
    assert a._index is b._index
    assert a["name"] is b["name"]  # built apart, one string once interned


def test_shapes_beyond_the_limit_are_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compact_module, "_shapes", {})
    monkeypatch.setattr(compact_module, "MAX_SHAPES", 2)
    rows = [compact({f"c{i}": "x"}) for i in range(5)]
    assert len(compact_module._shapes) == 2
    assert [r.get(f"c{i}") for i, r in enumerate(rows)] == ["x"] * 5
    assert all(isinstance(r, CompactRow) for r in rows)
