"""Root rotation as an explicit state machine.

``idle`` (one root) → ``both-trusted`` (bundle old + new, the old intermediate signs) →
``new-signing`` (bundle old + new, the new intermediate signs) → ``idle`` (bundle new only).
Each step is one call of `advance`; between steps the operator re-distributes bundles and
re-issues leaves, so no correctly configured workload ever sees an untrusted peer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mtls_contract.phases import Phase

if TYPE_CHECKING:
    from .authority import CA

__all__ = [
    "PHASES",
    "PhaseMismatch",
    "advance",
    "next_phase",
    "signing_index",
]

PHASES = tuple(Phase)
_GENERATIONS: dict[str, int] = {Phase.IDLE: 1, Phase.BOTH_TRUSTED: 2, Phase.NEW_SIGNING: 2}


class PhaseMismatch(ValueError):
    """The rotation is not in the phase the caller expected (someone else moved it)."""


def next_phase(phase: str) -> str:
    """The phase after ``phase``.

    Raises:
        ValueError: for an unknown phase.
    """
    _check_phase(phase)
    return PHASES[(PHASES.index(phase) + 1) % len(PHASES)]


def signing_index(phase: str, generations: int) -> int:
    """Which generation (oldest first) signs in ``phase``.

    Raises:
        ValueError: if ``generations`` does not fit ``phase`` (e.g. two roots while idle).
    """
    _check_phase(phase)
    if generations != _GENERATIONS[phase]:
        raise ValueError(f"phase '{phase}' needs {_GENERATIONS[phase]} roots, found {generations}")
    return 1 if phase == Phase.NEW_SIGNING else 0


def advance(
    phase: str,
    generations: tuple[CA, ...],
    *,
    expected: str,
    new_ca: Callable[[], CA],
) -> tuple[str, tuple[CA, ...]]:
    """One rotation step: the next phase and the generations (oldest first) it trusts.

    Args:
        phase: the current phase.
        generations: the current CAs, oldest first.
        expected: the phase the caller believes is current; guards against double steps.
        new_ca: makes the new root and intermediate; called only when leaving ``idle``.

    Raises:
        PhaseMismatch: if ``phase`` is not ``expected``.
    """
    signing_index(phase, len(generations))
    if phase != expected:
        raise PhaseMismatch(f"root rotation is in phase '{phase}', not '{expected}'")
    following = next_phase(phase)
    if phase == Phase.IDLE:
        return following, (*generations, new_ca())
    if phase == Phase.BOTH_TRUSTED:
        return following, generations
    return following, generations[1:]


def _check_phase(phase: str) -> None:
    if phase not in PHASES:
        raise ValueError(f"rotation phase '{phase}' is unknown (one of {', '.join(PHASES)})")
