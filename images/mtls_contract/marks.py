"""The label and annotations the operator puts on Secrets and pods, and the name of its Lease:
what it shares with the tools that read its work (``hello-mtls status``, ``renew``, ``check``).
Names only, so those tools import no operator code."""

from __future__ import annotations

__all__ = [
    "ANNOTATION_BUNDLE",
    "ANNOTATION_CLAIM",
    "ANNOTATION_INTERMEDIATE",
    "ANNOTATION_NOT_AFTER",
    "ANNOTATION_RENEW",
    "ANNOTATION_SERIAL",
    "ANNOTATION_VERSION",
    "LABEL_MANAGED",
    "LEASE_NAME",
]

LABEL_MANAGED = "hello-mtls.dev/managed"
ANNOTATION_SERIAL = "hello-mtls.dev/serial"
ANNOTATION_NOT_AFTER = "hello-mtls.dev/not-after"
ANNOTATION_BUNDLE = "hello-mtls.dev/bundle-sha256"
ANNOTATION_CLAIM = "hello-mtls.dev/claim"
ANNOTATION_RENEW = "hello-mtls.dev/renew"
"""Set on a managed Secret (any value, e.g. by ``hello-mtls renew``): issue a new key and
certificate now. The operator writes annotations of its own only, so the new Secret drops it."""
ANNOTATION_VERSION = "hello-mtls.dev/secret-version"
"""Set on the pods of a Secret after each update: the kubelet refreshes their files at once."""
ANNOTATION_INTERMEDIATE = "hello-mtls.dev/intermediate-sha256"
"""Set on a pod-certificate pod when its request is issued: the SHA-256 of the intermediate that
signed its certificate (as the CA's ``GET /status`` names it)."""
LEASE_NAME = "hello-mtls-operator"
"""The ``coordination.k8s.io/v1`` Lease in the operator's namespace that elects its leader."""
