"""One compiled alternation per pattern set answers as ``fnmatchcase`` pair by pair."""

from __future__ import annotations

import random
from fnmatch import fnmatchcase

import pytest

from fleetctl.detection.globs import any_glob

ALPHABET = "abAB/._-*?[]!^\\|()"


def words(rng: random.Random) -> list[str]:
    return [
        "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 8)))
        for _ in range(rng.randrange(0, 5))
    ]


@pytest.mark.parametrize("seed", range(20))
def test_it_answers_as_fnmatchcase_pair_by_pair(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(500):
        pats, listed = words(rng), words(rng)
        exact = any(n and fnmatchcase(n, p) for n in listed for p in pats)
        folded = any(n and fnmatchcase(n.lower(), p.lower()) for n in listed for p in pats)
        assert any_glob(pats, listed) == exact, (pats, listed)
        assert any_glob(tuple(pats), listed, fold=True) == folded, (pats, listed)


def test_the_shapes_the_catalog_and_baselines_use() -> None:
    assert any_glob(("python3*", "perl"), ("python3.12",))
    assert not any_glob(("python3*", "perl"), ("ruby", ""))
    assert any_glob(("/run/*",), ("/run/systemd/journal/stdout",))  # * crosses /
    assert any_glob(("POWERSHELL.EXE",), ("powershell.exe",), fold=True)
    assert not any_glob((), ("anything",))
