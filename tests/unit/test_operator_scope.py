"""Which namespaces an installation serves: the operator's rule (`mtls_operator.scope`) and the
chart's selector of the admission policies (``hello-mtls.servedNamespaces``) say the same."""

from __future__ import annotations

from pathlib import Path

import yaml

from mtls_operator.config import from_environment
from mtls_operator.scope import NEVER_SERVED, Scope

K8S = Path(__file__).resolve().parents[2] / "k8s"


def test_kube_system_and_the_own_namespace_are_never_served() -> None:
    everything = Scope(own="certs")
    assert everything.refusal("shop") is None
    assert everything.refusal("kube-system") is not None
    assert everything.refusal("certs") is not None
    listed = Scope(own="certs", watched=frozenset({"shop", "kube-system"}))
    assert listed.refusal("shop") is None
    assert listed.refusal("bank") is not None
    assert listed.refusal("kube-system") is not None  # even when listed


def test_the_scope_is_read_from_the_environment() -> None:
    assert from_environment({}).scope == Scope(own="hello-mtls")
    config = from_environment(
        {"HELLO_MTLS_LEASE_NAMESPACE": "certs", "HELLO_MTLS_WATCH_NAMESPACES": "shop, web,"}
    )
    assert config.scope == Scope(own="certs", watched=frozenset({"shop", "web"}))


def test_the_admission_policies_select_the_namespaces_the_operator_serves() -> None:
    """k8s/ is the chart rendered with the defaults (release namespace hello-mtls)."""
    documents = [
        d
        for name in ("25-names-policy.yaml", "26-wiring-policy.yaml")
        for d in yaml.safe_load_all((K8S / name).read_text())
        if d and d["kind"] in ("ValidatingAdmissionPolicy", "MutatingAdmissionPolicy")
    ]
    assert len(documents) == 2
    for policy in documents:
        (expression,) = policy["spec"]["matchConstraints"]["namespaceSelector"]["matchExpressions"]
        assert expression["key"] == "kubernetes.io/metadata.name"
        assert expression["operator"] == "NotIn"
        assert expression["values"] == [*NEVER_SERVED, "hello-mtls"]
