"""The root rotation state machine, step by step, with its refusals."""

from __future__ import annotations

from typing import Any

import pytest

from mtls_ca.rotation import (
    PhaseMismatch,
    advance,
    next_phase,
    signing_index,
)
from mtls_contract.phases import Phase

OLD: Any = object()
NEW: Any = object()


def test_next_phase_cycles() -> None:
    assert next_phase(Phase.IDLE) == Phase.BOTH_TRUSTED
    assert next_phase(Phase.BOTH_TRUSTED) == Phase.NEW_SIGNING
    assert next_phase(Phase.NEW_SIGNING) == Phase.IDLE
    with pytest.raises(ValueError, match="^rotation phase 'done' is unknown"):
        next_phase("done")


def test_full_rotation() -> None:
    made = []

    def new_ca() -> Any:
        made.append(NEW)
        return NEW

    phase, gens = advance(Phase.IDLE, (OLD,), expected=Phase.IDLE, new_ca=new_ca)
    assert (phase, gens, signing_index(phase, len(gens))) == (Phase.BOTH_TRUSTED, (OLD, NEW), 0)
    phase, gens = advance(phase, gens, expected=Phase.BOTH_TRUSTED, new_ca=new_ca)
    assert (phase, gens, signing_index(phase, len(gens))) == (Phase.NEW_SIGNING, (OLD, NEW), 1)
    phase, gens = advance(phase, gens, expected=Phase.NEW_SIGNING, new_ca=new_ca)
    assert (phase, gens, signing_index(phase, len(gens))) == (Phase.IDLE, (NEW,), 0)
    assert made == [NEW]  # only leaving idle makes a CA


@pytest.mark.parametrize(
    ("phase", "gens", "expected"),
    [
        (Phase.IDLE, (OLD,), Phase.BOTH_TRUSTED),
        (Phase.BOTH_TRUSTED, (OLD, NEW), Phase.IDLE),
        (Phase.NEW_SIGNING, (OLD, NEW), Phase.BOTH_TRUSTED),
    ],
)
def test_advance_refuses_a_stale_expectation(
    phase: str, gens: tuple[Any, ...], expected: str
) -> None:
    with pytest.raises(PhaseMismatch) as info:
        advance(phase, gens, expected=expected, new_ca=lambda: NEW)
    assert str(info.value) == f"root rotation is in phase '{phase}', not '{expected}'"


def test_generations_must_fit_the_phase() -> None:
    with pytest.raises(ValueError) as info:
        signing_index(Phase.IDLE, 2)
    assert str(info.value) == "phase 'idle' needs 1 roots, found 2"
    with pytest.raises(ValueError):
        advance(Phase.BOTH_TRUSTED, (OLD,), expected=Phase.BOTH_TRUSTED, new_ca=lambda: NEW)
