"""What the reconciler needs from the outside world, and the errors it understands.

`Cluster`, `PodCertificates` and `Leases` are implemented by `mtls_operator.kube` (the
Kubernetes API), `CAService` by `mtls_operator.ca_client` (the CA's HTTPS API); unit tests use
in-memory stand-ins.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from mtls_contract.ca_api import SignAnswer
from mtls_operator.ca_view import CAView

__all__ = [
    "CARefused",
    "CAService",
    "CAUnavailable",
    "Cluster",
    "Conflict",
    "Forbidden",
    "Invalid",
    "Leases",
    "PodCertificates",
]


class Conflict(Exception):
    """The object changed (or appeared) since it was read; read it again."""


class Invalid(Exception):
    """The API server refused a write as invalid (HTTP 422); its message says why."""


class Forbidden(Exception):
    """The API server refused a write (HTTP 403: RBAC, or an admission policy); its message
    says why. Retrying does not help until an administrator changes something."""


class CAUnavailable(Exception):
    """The CA could not be reached or failed; retrying later may work."""


class CARefused(Exception):
    """The CA refused the request; its message says why, ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Cluster(Protocol):
    """The Kubernetes API calls the reconciler needs."""

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def create_secret(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def replace_secret(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> bool:
        """Set ``annotations`` on pod ``name``; False if it is gone."""
        ...

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def create_config_map(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def replace_config_map(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def event(self, pod: Mapping[str, Any], *, type: str, reason: str, message: str) -> None: ...


class CAService(Protocol):
    """The CA's HTTP API."""

    def sign(self, request: Mapping[str, Any]) -> SignAnswer: ...
    def status(self) -> CAView: ...
    def rotate_root(self, from_phase: str) -> None: ...
    def signers_behind(self) -> list[str]:
        """The CA signer pods that do not serve the root holder's current material yet (or
        cannot say); empty without signers. Raises `CAUnavailable` when the root holder cannot
        be asked."""
        ...

    def credential(self) -> Mapping[str, bytes]:
        """The files of the credential the operator calls the CA with, as mounted now."""
        ...


class PodCertificates(Protocol):
    """The Kubernetes API calls the pod-certificate signer needs; bodies are the API's JSON."""

    def list_requests(self, signer_name: str) -> tuple[list[dict[str, Any]], str]:
        """The PodCertificateRequests of ``signer_name``, and the list's resourceVersion."""
        ...

    def watch_requests(
        self, signer_name: str, resource_version: str
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Events (``ADDED``, ``MODIFIED``, ``DELETED``) after ``resource_version``."""
        ...

    def get_request(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pod as the API server stores it; None if it does not exist."""
        ...

    def update_request_status(self, body: dict[str, Any]) -> bool:
        """Write ``status``; False if the request is gone; `Conflict` or `Invalid` else."""
        ...

    def annotate_pod(
        self, namespace: str, name: str, uid: str, annotations: Mapping[str, str]
    ) -> bool:
        """Set ``annotations`` on pod ``name`` if its UID is ``uid``; False if it is gone or the
        name is another pod's now; `Forbidden` if the operator may not."""
        ...

    def get_trust_bundle(self, name: str) -> dict[str, Any] | None: ...
    def create_trust_bundle(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def replace_trust_bundle(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def event(self, pod: Mapping[str, Any], *, type: str, reason: str, message: str) -> None: ...


class Leases(Protocol):
    """The ``coordination.k8s.io/v1`` Lease calls the leader election needs (`leadership`);
    bodies are the API's JSON."""

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def create_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create the Lease; `Conflict` if it exists already."""
        ...

    def replace_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        """Write the Lease at the resourceVersion ``body`` carries; `Conflict` if it moved on."""
        ...
