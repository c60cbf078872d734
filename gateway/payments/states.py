"""A payment's states, their order, and what an event reporting one does (design.md 5.7).

``pending`` < ``processing`` < the terminal states ``completed``, ``failed``, ``expired``,
``cancelled``. A payment's state only moves forward: an event reporting an earlier state than
the payment has is ``superseded``, one reporting another terminal state than the payment's is
a ``conflict``; either leaves the state as it is. The Redis store's ``accept.lua`` holds the
same rule in Lua (one atomic step with the accept); the contract tests hold both to it.
"""

from __future__ import annotations

from typing import Literal

State = Literal["pending", "processing", "completed", "failed", "expired", "cancelled"]
STATES: tuple[State, ...] = ("pending", "processing", "completed", "failed", "expired", "cancelled")
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "expired", "cancelled"})
Mark = Literal["superseded", "conflict"]
MARKS: tuple[Mark, ...] = ("superseded", "conflict")

#: Where each state stands: terminal states share the last rank.
RANK = {"pending": 0, "processing": 1, "completed": 2, "failed": 2, "expired": 2, "cancelled": 2}


def advance(current: State | None, reported: State | None) -> tuple[State | None, Mark | None]:
    """The payment's state after an event reporting ``reported`` (``None``: the event reports
    no state), and the event's mark, from the payment's ``current`` state (``None``: new)."""
    if reported is None or current is None:
        return current or reported, None
    if current in TERMINAL and reported in TERMINAL and reported != current:
        return current, "conflict"
    if RANK[reported] < RANK[current]:
        return current, "superseded"
    return reported, None
