"""The benchmark helpers are scripts in ``bench/``, importable once it is on the path."""

from __future__ import annotations

import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
