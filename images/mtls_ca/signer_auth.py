"""The root holder's check that a caller of ``POST /signing-material`` is a CA signer pod.

A signer pod proves what it is with a projected ServiceAccount token of an audience of its own
(``hello-mtls-ca-signer`` in the chart): the root holder asks the API server about it
(``TokenReview``, which needs exactly ``create tokenreviews``) and accepts it only when the API
server authenticated it for that audience as the signers' ServiceAccount. The audience keeps
every other token out, the Pod's own default token included: a token for the API server is no
token for the root holder. The reviewer is an interface so that tests without an API server can
put their own behind it; the one a user runs is `KubernetesReviewer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "KubernetesReviewer",
    "NotASigner",
    "Reviewed",
    "Reviewer",
    "ReviewUnavailable",
    "SignerPolicy",
]

_POD_NAME = "authentication.kubernetes.io/pod-name"


class NotASigner(Exception):
    """The token does not prove a signer pod (the message says why)."""


class ReviewUnavailable(Exception):
    """The API server could not be asked (the signer tries again later)."""


@dataclass(frozen=True)
class Reviewed:
    """What the API server said about a token."""

    authenticated: bool
    audiences: tuple[str, ...] = ()
    username: str = ""
    pod_name: str = ""
    error: str = ""


class Reviewer(Protocol):
    def review(self, token: str, audience: str) -> Reviewed:
        """Ask the API server about ``token`` for ``audience``.

        Raises:
            ReviewUnavailable: if the API server could not be asked.
        """
        ...


@dataclass(frozen=True)
class SignerPolicy:
    """Who may fetch the signing material: the ServiceAccount ``namespace/service_account``,
    with a token for ``audience``."""

    namespace: str
    service_account: str
    audience: str
    reviewer: Reviewer

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    def check(self, token: str) -> str:
        """The signer pod's name (or its ServiceAccount's when the token names no pod).

        Raises:
            NotASigner: if the API server did not authenticate the token for the audience as
                the signers' ServiceAccount.
            ReviewUnavailable: if the API server could not be asked.
        """
        if not token:
            raise NotASigner("a bearer token is required")
        reviewed = self.reviewer.review(token, self.audience)
        if not reviewed.authenticated:
            detail = f": {reviewed.error}" if reviewed.error else ""
            raise NotASigner(f"the API server did not authenticate the token{detail}")
        if self.audience not in reviewed.audiences:
            raise NotASigner(f"the token is not for the audience '{self.audience}'")
        if reviewed.username != self.username:
            raise NotASigner(f"'{reviewed.username}' is not the signers' ServiceAccount")
        return reviewed.pod_name or reviewed.username


class KubernetesReviewer:
    """`Reviewer` through the API server's ``TokenReview`` (authentication.k8s.io/v1)."""

    def __init__(self, api: Any = None, *, timeout: float = 5.0) -> None:
        self._api = api
        self._timeout = timeout

    def review(self, token: str, audience: str) -> Reviewed:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        from .k8s_secrets import api_client

        body = client.V1TokenReview(
            spec=client.V1TokenReviewSpec(token=token, audiences=[audience])
        )
        try:
            if self._api is None:
                self._api = client.AuthenticationV1Api(api_client())
            answer = self._api.create_token_review(body, _request_timeout=self._timeout)
        except ApiException as e:
            raise ReviewUnavailable(f"TokenReview failed: {e.status} {e.reason}") from None
        except (HTTPError, OSError) as e:
            raise ReviewUnavailable(f"TokenReview failed: {e}") from None
        status = answer.status
        if status is None:
            return Reviewed(authenticated=False, error="no status in the answer")
        user = status.user
        extra = (user.extra if user is not None else None) or {}
        pods = extra.get(_POD_NAME) or []
        return Reviewed(
            authenticated=bool(status.authenticated),
            audiences=tuple(status.audiences or ()),
            username=(user.username if user is not None else None) or "",
            pod_name=str(pods[0]) if pods else "",
            error=status.error or "",
        )
