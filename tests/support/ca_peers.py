"""The TLS peer of a request to the CA's Flask app under its test client: a stand-in for
``environ["gunicorn.socket"]`` (the real socket is exercised in tests/integration), and the
client certificates of the CA's credentials as ``getpeercert()`` returns them."""

from __future__ import annotations

from typing import Any

PROVISIONER = {
    "subject": ((("commonName", "operator"),),),
    "subjectAltName": (("URI", "spiffe://cluster.local/hello-mtls/provisioner/operator"),),
}
ADMIN = {
    "subject": ((("commonName", "alice"),),),
    "subjectAltName": (("URI", "spiffe://cluster.local/hello-mtls/admin/alice"),),
}


class Peer:
    """The socket of a client that presented ``cert`` (None: no certificate)."""

    def __init__(self, cert: dict[str, Any] | None) -> None:
        self.cert = cert

    def getpeercert(self) -> dict[str, Any] | None:
        return self.cert or {}
