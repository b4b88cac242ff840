"""The shared table of claim moves against the Python rule (the e2e tier runs it against the
chart's admission policy on a real API server: tests/e2e/test_claim_moves.py)."""

from __future__ import annotations

import pytest

from mtls_operator.claims import Claim, Rules, claim_moved, parse_claim
from support.claim_moves import CASES, Move

NAMESPACE = "e2e-claim-moves-0a1b2c"


@pytest.mark.parametrize("move", CASES, ids=[m.id for m in CASES])
def test_the_operator_decides_as_the_table_says(move: Move) -> None:
    before, after, error = move.for_namespace(NAMESPACE)
    rules = Rules(pod_certificates=True)

    def claim(annotations: dict[str, str]) -> Claim:
        return parse_claim(annotations, namespace=NAMESPACE, service_account="web", rules=rules)

    assert claim_moved(claim(before), claim(after)) == error


def test_the_table_has_rows_of_every_kind() -> None:
    assert {(m.error is None, m.pod_certificates) for m in CASES} == {
        (True, False),
        (True, True),
        (False, False),
        (False, True),
    }
