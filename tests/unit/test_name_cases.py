"""The shared table of annotation sets against the Python rules (the e2e tier runs it against the
chart's admission policy on a real API server: tests/e2e/test_admission_names.py)."""

from __future__ import annotations

import pytest

from mtls_operator.claims import parse_claim
from support.name_cases import ALLOWED_NAMESPACE, CASES, Case, rules

# Any namespace that is not a public suffix behaves alike; the e2e tier uses random ones.
NAMESPACE = "e2e-admission-names-0a1b2c"


RUNS = [
    pytest.param(case, signer, id=f"{case.id}-{'signer' if signer else 'no-signer'}")
    for case in CASES
    for signer in (True, False)
    if case.pod_certificates in (None, signer)
]


@pytest.mark.parametrize(("case", "signer"), RUNS)
def test_the_operator_decides_as_the_table_says(case: Case, signer: bool) -> None:
    namespace = ALLOWED_NAMESPACE if case.allowed else NAMESPACE
    annotations, error = case.for_namespace(namespace)

    def parse() -> None:
        parse_claim(
            annotations,
            namespace=namespace,
            service_account="default",
            rules=rules(pod_certificates=signer),
        )

    if error is None:
        parse()
    else:
        with pytest.raises(ValueError) as caught:
            parse()
        assert str(caught.value) == error


def test_the_table_has_rows_of_every_kind() -> None:
    assert {(c.error is None, c.policy, c.allowed) for c in CASES} >= {
        (True, True, False),
        (True, True, True),
        (False, True, False),
        (False, True, True),
        (False, False, False),
        (False, False, True),
    }
    assert {c.pod_certificates for c in CASES if c.error is None} == {None, True}
    assert {c.pod_certificates for c in CASES if c.error is not None} == {None, True, False}
