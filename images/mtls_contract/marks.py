"""Every ``hello-mtls.dev/*`` key: the annotations a pod asks with, and the label and
annotations the operator puts on Secrets and pods; and the name of the operator's Lease. What the
operator shares with the tools that read its work (``hello-mtls status``, ``renew``, ``check``).
Names only, so those tools import no operator code."""

from __future__ import annotations

__all__ = [
    "ANNOTATION_BUNDLE",
    "ANNOTATION_CLAIM",
    "ANNOTATION_DURATION",
    "ANNOTATION_INTERMEDIATE",
    "ANNOTATION_MODE",
    "ANNOTATION_NAME",
    "ANNOTATION_NOT_AFTER",
    "ANNOTATION_RENEW",
    "ANNOTATION_SANS",
    "ANNOTATION_SECRET",
    "ANNOTATION_SERIAL",
    "ANNOTATION_VERSION",
    "LABEL_MANAGED",
    "LEASE_NAME",
    "MODES",
    "POD_CERTIFICATE",
    "SECRET_MODE",
]

# What a pod asks for (docs/annotations.md); `mtls_operator.claims` reads them.
ANNOTATION_NAME = "hello-mtls.dev/name"
ANNOTATION_SANS = "hello-mtls.dev/sans"
ANNOTATION_DURATION = "hello-mtls.dev/duration"
ANNOTATION_SECRET = "hello-mtls.dev/secret"
ANNOTATION_MODE = "hello-mtls.dev/mode"

SECRET_MODE = "secret"
"""The operator makes the key and keeps it in a Secret (the default)."""
POD_CERTIFICATE = "pod-certificate"
"""The kubelet makes the key and asks the operator, as signer, through a PodCertificateRequest."""
MODES = (SECRET_MODE, POD_CERTIFICATE)

# What the operator writes.
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
