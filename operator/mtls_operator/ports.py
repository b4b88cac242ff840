"""What the reconciler needs from the outside world, and the errors it understands.

`Cluster` is implemented by `mtls_operator.kube` (the Kubernetes API), `CAService` by
`mtls_operator.ca_client` (the CA's HTTPS API); unit tests use in-memory stand-ins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from mtls_operator.tlssecret import Answer, CAView

__all__ = ["CARefused", "CAService", "CAUnavailable", "Cluster", "Conflict"]


class Conflict(Exception):
    """The Secret changed (or appeared) since it was read; read it again."""


class CAUnavailable(Exception):
    """The CA could not be reached or failed; retrying later may work."""


class CARefused(Exception):
    """The CA refused the request; its message says why."""


class Cluster(Protocol):
    """The Kubernetes API calls the reconciler needs."""

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def create_secret(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def replace_secret(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None: ...
    def event(self, pod: Mapping[str, Any], *, type: str, reason: str, message: str) -> None: ...


class CAService(Protocol):
    """The CA's HTTP API."""

    def sign(self, request: Mapping[str, Any]) -> Answer: ...
    def status(self) -> CAView: ...
    def rotate_root(self, from_phase: str) -> None: ...
    def credential(self) -> Mapping[str, bytes]:
        """The files of the credential the operator calls the CA with, as mounted now."""
        ...
