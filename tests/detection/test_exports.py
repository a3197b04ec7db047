"""The public surface of ``fleetctl.detection`` is exactly ``__all__``."""

from __future__ import annotations

import fleetctl.detection as detection


def test_all_names_exist_and_are_sorted() -> None:
    assert all(hasattr(detection, name) for name in detection.__all__)
    assert detection.__all__ == sorted(detection.__all__, key=lambda n: (not n.isupper(), n))


def test_every_public_class_and_function_is_exported() -> None:
    public = {
        name
        for name, value in vars(detection).items()
        if not name.startswith("_")
        and getattr(value, "__module__", "").startswith("fleetctl.detection.")
    }
    assert public == {n for n in detection.__all__ if not n.isupper()}
