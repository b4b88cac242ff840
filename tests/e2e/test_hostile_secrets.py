"""Scenario: managed Secrets that nobody's pod claims, holding what no hello-mtls Secret holds,
delay no one.

Anyone who may create Secrets in a namespace the operator serves can label one
``hello-mtls.dev/managed=true``. Here ten of them hold a valid RSA-16384 key
(`support.hostile_secrets`; loading it with RSA key validation holds the GIL for 50 s or more)
and a few hold junk; no pod claims them. Before the fix, ten such Secrets with RSA-8192 keys in
one namespace made a pod elsewhere wait 31 s for its Secret, and 29 s again after an operator
restart (the operator then lists every managed Secret anew). Now an annotated pod in another
namespace gets its Secret within `BOUND`, and so does one after a restart, once a first pod has
its Secret from the restarted operator (that one waits for the operator's start too); and a pod
that claims such a Secret gets it re-issued.

The latencies are logged (``pytest -s``); the bound is generous, only a stall fails it (the
latency targets are in ``benchmarks/``).
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness.waiting import wait_until
from mtls_context.layout import CA, CERT, KEY, POLICY
from support import hostile_secrets as hostile
from support.cluster_api import PRODUCT_NAMESPACE, apply, dump_namespace, kubectl, kubectl_json, log
from support.operator_workloads import idle_pod, rollout, secret_inspection

pytestmark = pytest.mark.alone("restarts the operator, with hostile Secrets for it to read")
BOUND = 20.0
"""Seconds from creating an annotated pod to its valid Secret (about 1 s without hostile
Secrets on the local cluster)."""
RESTART_BOUND = 120.0
"""Seconds from the restarted operator's Deployment rolling out to the first pod's Secret: the
operator's own start is in it."""
RSA_SECRETS = 10


def _hostile_secrets(namespace: str) -> list[dict[str, Any]]:
    """Ten Secrets holding an RSA-16384 key, and junk: random bytes, a DSA key, an encrypted key,
    a chain of 100 certificates."""
    rsa = hostile.files(hostile.rsa_16384())
    junk = {
        "junk-bytes-tls": {
            CERT: os.urandom(2048),
            KEY: os.urandom(2048),
            CA: os.urandom(64),
            POLICY: os.urandom(64),
        },
        "junk-dsa-tls": hostile.files(hostile.dsa()),
        "junk-encrypted-tls": hostile.files(hostile.encrypted()),
        "junk-chain-tls": hostile.files(
            hostile.rsa_with_modulus(2048), chain=hostile.certificate() * 100
        ),
    }
    secrets_ = [
        hostile.managed_secret(f"hostile-{i}-tls", namespace, rsa) for i in range(RSA_SECRETS)
    ]
    return secrets_ + [hostile.managed_secret(n, namespace, f) for n, f in junk.items()]


def _create(objects: list[dict[str, Any]], namespace: str) -> None:
    """``kubectl create``, not apply: apply would copy each Secret into an annotation."""
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    kubectl("create", "-n", namespace, "-f", "-", stdin=body, timeout=120)


def _versions(namespace: str) -> dict[str, str]:
    items = kubectl_json("get", "secrets", "-n", namespace, "-l", "hello-mtls.dev/managed=true")
    return {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in items["items"]}


def _operator_restarts() -> list[int]:
    pods = kubectl_json(
        "get", "pods", "-n", PRODUCT_NAMESPACE, "-l", "app.kubernetes.io/name=hello-mtls-operator"
    )
    return [
        status.get("restartCount", 0)
        for item in pods["items"]
        for status in item.get("status", {}).get("containerStatuses", [])
    ]


def _valid(namespace: str, secret: str) -> bool:
    found = secret_inspection(secret, namespace)
    return found is not None and found[0].problem is None


def _seconds_to_secret(namespace: str, name: str, timeout: float = BOUND) -> float:
    """Create annotated pod ``name``; return how long its valid Secret took to appear."""
    started = time.monotonic()
    apply(idle_pod(namespace, name), namespace)
    wait_until(
        f"pod {name}'s valid Secret",
        functools.partial(_valid, namespace, f"{name}-tls"),
        timeout=timeout,
        interval=0.2,
    )
    return time.monotonic() - started


@pytest.fixture
def elsewhere(request: pytest.FixtureRequest, installed: str) -> Iterator[str]:
    """A second namespace for the scenario, without the hostile Secrets."""
    name = f"e2e-elsewhere-{secrets.token_hex(3)}"
    kubectl("create", "namespace", name)
    log(f"namespace {name}")
    failed_before = request.session.testsfailed
    yield name
    if request.session.testsfailed > failed_before:
        dump_namespace(name)
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_hostile_secrets_no_pod_claims_delay_no_pod(namespace: str, elsewhere: str) -> None:
    hostile_secrets = _hostile_secrets(namespace)
    _create(hostile_secrets, namespace)
    versions = _versions(namespace)
    assert len(versions) == len(hostile_secrets)
    log(f"{len(versions)} hostile managed Secrets in {namespace}, {RSA_SECRETS} with RSA-16384")
    restarts = _operator_restarts()

    seconds = _seconds_to_secret(elsewhere, "first")
    log(f"pod -> valid Secret with the hostile Secrets present: {seconds:.1f} s")
    assert seconds < BOUND
    assert _operator_restarts() == restarts, "the operator restarted"

    kubectl(
        "-n",
        PRODUCT_NAMESPACE,
        "delete",
        "pod",
        "-l",
        "app.kubernetes.io/name=hello-mtls-operator",
        "--wait=true",
        timeout=120,
    )
    rollout("hello-mtls-operator", PRODUCT_NAMESPACE)
    seconds = _seconds_to_secret(elsewhere, "after-restart", timeout=RESTART_BOUND)
    log(f"operator restarted -> first pod's valid Secret (with its start): {seconds:.1f} s")
    seconds = _seconds_to_secret(elsewhere, "second")
    log(f"pod -> valid Secret after the restart: {seconds:.1f} s")
    assert seconds < BOUND
    assert _versions(namespace) == versions, "the operator changed a Secret no pod claims"


def test_a_pod_claiming_a_hostile_secret_gets_it_reissued(namespace: str) -> None:
    files = hostile.files(hostile.rsa_16384())
    _create([hostile.managed_secret("claimant-tls", namespace, files)], namespace)
    seconds = _seconds_to_secret(namespace, "claimant")
    log(f"pod claiming a Secret with an RSA-16384 key -> re-issued: {seconds:.1f} s")
    assert seconds < BOUND
    reason = f"(tls.key is {len(files[KEY]):,} bytes, more than hello-mtls ever writes there"
    wait_until(
        "the Issued Event that says why",
        lambda: any(reason in message for message in _issued_messages(namespace, "claimant")),
        timeout=30,
    )


def _issued_messages(namespace: str, pod: str) -> list[str]:
    events = kubectl_json("get", "events", "-n", namespace)["items"]
    return [
        e["message"]
        for e in events
        if e["involvedObject"].get("name") == pod and e.get("reason") == "Issued"
    ]
