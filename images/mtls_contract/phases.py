"""The phases of the CA's root rotation, as ``GET /status`` names them.

``idle`` (one root) → ``both-trusted`` (bundle old + new, the old intermediate signs) →
``new-signing`` (bundle old + new, the new intermediate signs) → ``idle`` (bundle new only).
The CA moves through them (`mtls_ca.rotation`); the operator waits for each to show everywhere
before it asks for the next (`mtls_operator.rotation`); ``hello-mtls status`` shows what each
waits for. A `Phase` is a ``str``: it compares equal to the name in a JSON document.
"""

from __future__ import annotations

import enum

__all__ = ["Phase"]


class Phase(enum.StrEnum):
    """A root-rotation phase; iteration gives them in the order the rotation takes them."""

    IDLE = "idle"
    BOTH_TRUSTED = "both-trusted"
    NEW_SIGNING = "new-signing"
