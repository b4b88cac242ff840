"""Scenario 3: only annotated pods get a certificate, and bad annotations get a Warning Event
with the reason and no certificate.

The admission policy refuses most bad annotations before a pod exists (test_admission_names.py);
the pods here carry ones it cannot judge and admits, so the operator has the last word."""

from __future__ import annotations

import base64

import pytest

from harness.waiting import wait_until
from support.cluster_api import apply, kubectl, kubectl_json, log
from support.pods import pod

NAME = "hello-mtls.dev/name"
SANS = "hello-mtls.dev/sans"
# The component the operator reports its Events as.
OPERATOR = "hello-mtls-operator"

BAD = {
    # pod name: (annotations, the Secret it would have got)
    # pаypаl with Cyrillic а: the policy cannot decode punycode.
    "mixed-scripts": ({NAME: "xn--pypl-53dc.{ns}.svc"}, "xn--pypl-53dc-tls"),
    # No IP SANs unless an admin allows a network; the policy leaves IPv6 to the operator.
    "ipv6-san": ({NAME: "ipv6-san.{ns}.svc", SANS: "fd00::1"}, "ipv6-san-tls"),
}


def _warnings_for(namespace: str, pod_name: str) -> list[dict[str, object]]:
    """The operator's Warning Events on the pod (the kubelet's own, such as FailedMount while
    the wired Secret does not exist, are not what these scenarios are about)."""
    events = kubectl_json("get", "events", "-n", namespace)["items"]
    return [
        event
        for event in events
        if event["involvedObject"].get("name") == pod_name
        and event.get("type") == "Warning"
        and event.get("reportingComponent") == OPERATOR
    ]


def _secret_names(namespace: str) -> set[str]:
    items = kubectl_json("get", "secrets", "-n", namespace)["items"]
    return {item["metadata"]["name"] for item in items}


def test_unannotated_pod_gets_no_secret_and_annotated_twin_does(namespace: str) -> None:
    apply(
        [pod("plain"), pod("opted-in", annotations={NAME: f"opted-in.{namespace}.svc"})], namespace
    )

    wait_until(
        "the opted-in pod's Secret", lambda: "opted-in-tls" in _secret_names(namespace), timeout=60
    )
    managed = kubectl(
        "get", "secrets", "-n", namespace, "-l", "hello-mtls.dev/managed=true", "-o", "name"
    )
    assert managed.split() == ["secret/opted-in-tls"]


@pytest.mark.parametrize("pod_name", sorted(BAD))
def test_bad_annotation_gets_a_warning_and_no_certificate(namespace: str, pod_name: str) -> None:
    annotations, secret = BAD[pod_name]
    annotations = {key: value.format(ns=namespace) for key, value in annotations.items()}
    apply(pod(pod_name, annotations=annotations), namespace)

    warnings = wait_until(
        f"a Warning Event on pod {pod_name}", lambda: _warnings_for(namespace, pod_name), timeout=60
    )
    log(f"{pod_name}: {warnings[0]['reason']}: {warnings[0]['message']}")
    assert warnings[0]["reason"] == "InvalidAnnotation"
    message = str(warnings[0]["message"])
    # Names over 64 characters show as their first 60 and "..." (long test namespaces).
    assert any(value[:60] in message for value in annotations.values()), message

    # The operator keeps serving others: a good pod created after the bad one gets its Secret...
    apply(pod("control", annotations={NAME: f"control.{namespace}.svc"}), namespace)
    wait_until(
        "the control pod's Secret", lambda: "control-tls" in _secret_names(namespace), timeout=60
    )
    # ...and by then the bad pod still has none: the operator never queues a pod whose
    # annotations it warned about, and it had warned before the control pod existed.
    assert secret not in _secret_names(namespace)
    managed = kubectl(
        "get", "secrets", "-n", namespace, "-l", "hello-mtls.dev/managed=true", "-o", "name"
    )
    assert managed.split() == ["secret/control-tls"]


def test_a_secret_labelled_managed_false_is_left_alone(namespace: str) -> None:
    theirs = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "theirs-tls", "labels": {"hello-mtls.dev/managed": "false"}},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": base64.b64encode(b"theirs").decode(), "tls.key": "eA=="},
    }
    apply(theirs, namespace)
    before = kubectl_json("get", "secret", "theirs-tls", "-n", namespace)
    apply(pod("theirs", annotations={NAME: f"theirs.{namespace}.svc"}), namespace)

    warnings = wait_until(
        "a Warning Event on pod theirs", lambda: _warnings_for(namespace, "theirs"), timeout=60
    )
    assert warnings[0]["reason"] == "SecretNotManaged"
    # The operator never handles one Secret twice at once: a second pod claiming it is warned
    # only by a later pass, so whatever the first pass would have written is there by then.
    apply(pod("theirs-twin", annotations={NAME: f"theirs.{namespace}.svc"}), namespace)
    twin = wait_until(
        "a Warning Event on pod theirs-twin",
        lambda: _warnings_for(namespace, "theirs-twin"),
        timeout=60,
    )
    assert twin[0]["reason"] == "SecretNotManaged"
    after = kubectl_json("get", "secret", "theirs-tls", "-n", namespace)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["data"] == before["data"]
