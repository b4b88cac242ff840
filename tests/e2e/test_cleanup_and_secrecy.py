"""Scenario 7: a workload's Secret is garbage-collected with it, and private keys appear nowhere
but where they belong: the CA's in its state (on its own volume), the leaves' in their Secrets."""

from __future__ import annotations

import base64
import re

from support.cluster_api import PRODUCT_NAMESPACE, apply, kubectl, kubectl_json, log, wait_until
from support.operator_workloads import ca_private_keys
from support.pods import deployment

PEM_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----(.*?)-----END", re.S)


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


def _needles(pem: str) -> list[str]:
    """Characters 20-60 of the key's base64 body: they sit on its first 64-character PEM line."""
    return ["".join(body.split())[20:60] for body in PEM_KEY.findall(pem)]


def _key_needles() -> dict[str, list[str]]:
    """Distinctive fragments of the CA's private keys (under "CA state") and of every private key
    in the cluster's Secrets (by Secret), as PEM text and as the base64 a Secret stores."""
    needles: dict[str, list[str]] = {
        "CA state": [n for k in ca_private_keys() for n in _needles(k)]
    }
    for secret in kubectl_json("get", "secrets", "--all-namespaces")["items"]:
        where = f"{secret['metadata']['namespace']}/{secret['metadata']['name']}"
        for value in (secret.get("data") or {}).values():
            text = base64.b64decode(value).decode(errors="replace").replace("\\n", "\n")
            needles.setdefault(where, []).extend(_needles(text))
            if "PRIVATE KEY" in text and len(value) > 200:
                needles.setdefault(where, []).append(value[120:160])
    return needles


def _everything_but_secrets(namespaces: list[str]) -> str:
    """Events, annotations and labels of every object kind we touch, ConfigMaps, and the logs of
    every container in ``namespaces``."""
    parts = [kubectl("get", "events", "--all-namespaces", "-o", "json")]
    parts.append(kubectl("get", "configmaps", "--all-namespaces", "-o", "json"))
    for kind in ("pods", "secrets", "deployments", "services", "serviceaccounts"):
        for item in kubectl_json("get", kind, "--all-namespaces")["items"]:
            parts.append(str(item["metadata"].get("annotations", {})))
            parts.append(str(item["metadata"].get("labels", {})))
    for ns in namespaces:
        for item in kubectl_json("get", "pods", "-n", ns)["items"]:
            for container in item["spec"]["containers"]:
                parts.append(
                    kubectl(
                        "logs",
                        "-n",
                        ns,
                        item["metadata"]["name"],
                        "-c",
                        container["name"],
                        check=False,
                        timeout=60,
                    )
                )
    return "\n".join(parts)


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

    needles = _key_needles()
    assert len(needles["CA state"]) >= 2, "no CA key found to look for"
    assert needles.get(f"{namespace}/keyed-tls"), "no leaf key found to look for"
    fragments = [fragment for found in needles.values() for fragment in found]
    log(f"scanning for {len(fragments)} key fragments from {len(needles)} Secrets")
    haystack = _everything_but_secrets([PRODUCT_NAMESPACE, namespace])
    leaked = [fragment for fragment in fragments if fragment in haystack]
    assert leaked == []

    # The twin: a key fragment planted in a ConfigMap is found by the same scan.
    planted = needles[f"{namespace}/keyed-tls"][0]
    kubectl("create", "configmap", "planted", "-n", namespace, f"--from-literal=copy={planted}")
    assert planted in _everything_but_secrets([namespace])
