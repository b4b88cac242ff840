"""The key scan: distinctive fragments of private keys, and the text of the API objects and logs
they must never appear in."""

from __future__ import annotations

import base64
import re

from support.cluster_api import kubectl, kubectl_json

PEM_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----(.*?)-----END", re.S)


def needles(pem: str) -> list[str]:
    """Characters 20-60 of each key's base64 body: they sit on its first 64-character PEM line
    and, for every key type we issue, hold bytes of the private value itself."""
    return ["".join(body.split())[20:60] for body in PEM_KEY.findall(pem)]


def secret_texts() -> dict[str, str]:
    """Every Secret's values as text (base64 undone), by ``namespace/name``."""
    texts = {}
    for secret in kubectl_json("get", "secrets", "--all-namespaces")["items"]:
        where = f"{secret['metadata']['namespace']}/{secret['metadata']['name']}"
        values = (secret.get("data") or {}).values()
        texts[where] = "\n".join(
            base64.b64decode(value).decode(errors="replace").replace("\\n", "\n")
            for value in values
        )
    return texts


def everything_but_secrets(namespaces: list[str]) -> str:
    """Events, annotations and labels of every object kind we touch, ConfigMaps,
    PodCertificateRequests whole, and the logs of every container in ``namespaces``."""
    parts = [kubectl("get", "events", "--all-namespaces", "-o", "json")]
    parts.append(kubectl("get", "configmaps", "--all-namespaces", "-o", "json"))
    parts.append(kubectl("get", "podcertificaterequests", "--all-namespaces", "-o", "json"))
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
