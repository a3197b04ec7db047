"""How often sign-ins may fail, counted in the store (``storage.sign_ins``), so that the
workers of ``serve --workers`` and every replica share one limit instead of each
granting its own.

A failed sign-in (a wrong password or an unknown user at ``/login`` or the console, a
refused token at the console) is stored with its address and the user name it gave.
Once ``allowed`` of them came from one address within ``window`` seconds, sign-ins from
that address are refused (429, before any password is checked) until the oldest of
them leaves the window. Once ``allowed`` were for one user name, from any addresses,
that name refuses the addresses that failed for it within the window, and only those:
a flood of guesses for one name from many addresses is held to one guess per address
per window, while the name's user still signs in from an address of their own, and
waits out one window at most after a mistake of their own (the lockout is bounded). A
refused attempt is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from storage import sign_ins

# Failures kept in the store at most, whatever their age: beyond, the oldest are
# forgotten first.
MAX_KEPT = 10_000


@dataclass(frozen=True)
class SignInLimits:
    allowed: int = 5  # failures within the window before refusals begin
    window: int = 60  # seconds

    def retry_after(self, session: Session, address: str, user: str | None, now: int) -> int:
        """Seconds until a sign-in from ``address`` (as ``user``, if named) is let in: 0
        for now."""
        since = now - self.window
        from_there = sign_ins.failure_times(session, since, self.allowed, address=address)
        until = self._clears(from_there, now)
        if user is not None:
            own = sign_ins.failure_times(session, since, 1, address=address, user=user)
            if own:
                for_name = sign_ins.failure_times(session, since, self.allowed, user=user)
                until = max(until, min(self._clears(for_name, now), own[0] + self.window))
        return until - now

    def _clears(self, newest: list[int], now: int) -> int:
        """When failures (the newest ``allowed``, newest first) fall under the limit."""
        return newest[-1] + self.window if len(newest) >= self.allowed else now

    def failed(self, session: Session, address: str, user: str | None, now: int) -> None:
        """Count a failed sign-in from ``address`` (for ``user``, if named)."""
        sign_ins.record_failure(
            session, address, user, now, forget_before=now - self.window, keep=MAX_KEPT
        )


LIMITS = SignInLimits()
