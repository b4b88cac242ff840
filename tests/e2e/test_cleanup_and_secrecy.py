"""Scenario 7: a workload's Secret is garbage-collected with it, and private keys appear nowhere
but where they belong: the CA's in its state (on its own volume), the leaves' in their Secrets."""

from __future__ import annotations

import base64

from harness.waiting import wait_until
from support.cluster_api import PRODUCT_NAMESPACE, apply, kubectl, kubectl_json, log
from support.key_scan import everything_but_secrets, needles
from support.operator_workloads import ca_private_keys
from support.pods import deployment


def test_deleting_the_workload_collects_its_secret(namespace: str) -> None:
    apply(
        deployment(
            "web",
            replicas=2,
            annotations={"hello-mtls.dev/name": f"web.{namespace}.svc"},
            secret="web-tls",
        ),
        namespace,
    )
    kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=180s", timeout=200)

    def owners() -> list[str] | None:
        secret = kubectl_json("get", "secret", "web-tls", "-n", namespace)
        names = [ref["name"] for ref in secret["metadata"].get("ownerReferences", [])]
        return names if len(names) == 2 else None

    pods = wait_until("both pods owning web-tls", owners, timeout=60)
    assert all(name.startswith("web-") for name in pods)

    kubectl("delete", "deployment", "web", "-n", namespace, "--wait=true", timeout=120)
    wait_until(
        "web-tls to be garbage-collected",
        lambda: (
            not kubectl(
                "get", "secret", "web-tls", "-n", namespace, "--ignore-not-found", "-o", "name"
            )
        ),
        timeout=120,
    )


def _key_needles() -> dict[str, list[str]]:
    """Distinctive fragments of the CA's private keys (under "CA state") and of every private key
    in the cluster's Secrets (by Secret), as PEM text and as the base64 a Secret stores."""
    found: dict[str, list[str]] = {"CA state": [n for k in ca_private_keys() for n in needles(k)]}
    for secret in kubectl_json("get", "secrets", "--all-namespaces")["items"]:
        where = f"{secret['metadata']['namespace']}/{secret['metadata']['name']}"
        for value in (secret.get("data") or {}).values():
            text = base64.b64decode(value).decode(errors="replace").replace("\\n", "\n")
            found.setdefault(where, []).extend(needles(text))
            if "PRIVATE KEY" in text and len(value) > 200:
                found.setdefault(where, []).append(value[120:160])
    return found


def test_private_keys_appear_only_in_their_secrets(namespace: str) -> None:
    apply(
        deployment(
            "keyed",
            replicas=1,
            annotations={"hello-mtls.dev/name": f"keyed.{namespace}.svc"},
            secret="keyed-tls",
        ),
        namespace,
    )
    kubectl("rollout", "status", "deployment/keyed", "-n", namespace, "--timeout=180s", timeout=200)

    found = _key_needles()
    assert len(found["CA state"]) >= 2, "no CA key found to look for"
    assert found.get(f"{namespace}/keyed-tls"), "no leaf key found to look for"
    fragments = [fragment for where in found.values() for fragment in where]
    log(f"scanning for {len(fragments)} key fragments from {len(found)} Secrets")
    haystack = everything_but_secrets([PRODUCT_NAMESPACE, namespace])
    leaked = [fragment for fragment in fragments if fragment in haystack]
    assert leaked == []

    # The twin: a key fragment planted in a ConfigMap is found by the same scan.
    planted = found[f"{namespace}/keyed-tls"][0]
    kubectl("create", "configmap", "planted", "-n", namespace, f"--from-literal=copy={planted}")
    assert planted in everything_but_secrets([namespace])
