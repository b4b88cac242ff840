"""The shared table of annotation sets against the Python rules (the e2e tier runs it against the
chart's admission policy on a real API server: tests/e2e/test_admission_names.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mtls_contract import name_rules
from mtls_operator.claims import parse_claim
from support.name_cases import CASES, RESERVED_NAMESPACES, Case, rules

# Any namespace that is not a public suffix nor a reserved TLD behaves alike; the e2e tier uses
# random ones.
NAMESPACE = "e2e-admission-names-0a1b2c"
# The chart's names policy as k8s/ holds it (`make lint` checks that k8s/ is the chart rendered).
NAMES_POLICY = Path(__file__).resolve().parents[2] / "k8s" / "25-names-policy.yaml"


RUNS = [
    pytest.param(case, signer, id=f"{case.id}-{'signer' if signer else 'no-signer'}")
    for case in CASES
    for signer in (True, False)
    if case.pod_certificates in (None, signer)
]


@pytest.mark.parametrize(("case", "signer"), RUNS)
def test_the_operator_decides_as_the_table_says(case: Case, signer: bool) -> None:
    namespace = case.run_in(NAMESPACE)
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


def test_every_reserved_top_level_domain_has_a_refused_row() -> None:
    assert set(RESERVED_NAMESPACES) == set(name_rules.RESERVED_TLDS)
    refused = {c.namespace for c in CASES if c.id.startswith("reserved-tld-") and c.error}
    assert refused >= set(RESERVED_NAMESPACES)


def test_the_names_policy_carries_the_reserved_top_level_domains_of_the_rules() -> None:
    policy = next(
        d
        for d in yaml.safe_load_all(NAMES_POLICY.read_text())
        if d and d["kind"] == "ValidatingAdmissionPolicy"
    )
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    # A CEL list of strings, written out as charts/.../admission-names-policy.yaml must hold it.
    expected = "[" + ", ".join(f"'{tld}'" for tld in name_rules.RESERVED_TLDS) + "]"
    assert variables["reservedTLDs"] == expected
