"""The root holder's check of a signer's token, and the TokenReview answer it reads."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mtls_ca.signer_auth import (
    KubernetesReviewer,
    NotASigner,
    Reviewed,
    ReviewUnavailable,
    SignerPolicy,
)

SIGNERS = "system:serviceaccount:hello-mtls:hello-mtls-ca-signer"


class Answers:
    """A `Reviewer` that answers what it was given, and remembers what it was asked."""

    def __init__(self, reviewed: Reviewed) -> None:
        self.reviewed = reviewed
        self.asked: list[tuple[str, str]] = []

    def review(self, token: str, audience: str) -> Reviewed:
        self.asked.append((token, audience))
        return self.reviewed


def policy(reviewed: Reviewed) -> tuple[SignerPolicy, Answers]:
    answers = Answers(reviewed)
    return SignerPolicy("hello-mtls", "hello-mtls-ca-signer", "ca-signer", answers), answers


def test_a_signers_token_names_its_pod() -> None:
    reviewed = Reviewed(True, ("ca-signer",), SIGNERS, pod_name="hello-mtls-ca-signer-abc")
    checker, answers = policy(reviewed)
    assert checker.check("t0ken") == "hello-mtls-ca-signer-abc"
    assert answers.asked == [("t0ken", "ca-signer")]


@pytest.mark.parametrize(
    ("reviewed", "message"),
    [
        (
            Reviewed(False, error="expired"),
            "the API server did not authenticate the token: expired",
        ),
        (Reviewed(True, ("api",), SIGNERS), "the token is not for the audience 'ca-signer'"),
        (
            Reviewed(True, ("ca-signer",), "system:serviceaccount:other:hello-mtls-ca-signer"),
            "'system:serviceaccount:other:hello-mtls-ca-signer' is not the signers' ServiceAccount",
        ),
    ],
)
def test_anything_else_is_not_a_signer(reviewed: Reviewed, message: str) -> None:
    checker, _ = policy(reviewed)
    with pytest.raises(NotASigner) as refused:
        checker.check("t0ken")
    assert str(refused.value) == message


def test_an_empty_token_is_not_sent_for_review() -> None:
    checker, answers = policy(Reviewed(True, ("ca-signer",), SIGNERS))
    with pytest.raises(NotASigner, match="a bearer token is required"):
        checker.check("")
    assert answers.asked == []


class TokenReviews:
    def __init__(self, answer: Any = None, error: Exception | None = None) -> None:
        self.answer, self.error = answer, error
        self.bodies: list[client.V1TokenReview] = []

    def create_token_review(self, body: client.V1TokenReview, **_: Any) -> Any:
        self.bodies.append(body)
        if self.error is not None:
            raise self.error
        return self.answer


def test_the_kubernetes_reviewer_asks_for_the_audience_and_reads_the_pod() -> None:
    user = client.V1UserInfo(
        username=SIGNERS, extra={"authentication.kubernetes.io/pod-name": ["signer-1"]}
    )
    status = client.V1TokenReviewStatus(authenticated=True, audiences=["ca-signer"], user=user)
    api = TokenReviews(SimpleNamespace(status=status))
    reviewed = KubernetesReviewer(api).review("t0ken", "ca-signer")
    assert reviewed == Reviewed(True, ("ca-signer",), SIGNERS, pod_name="signer-1")
    assert api.bodies[0].spec.token == "t0ken"
    assert api.bodies[0].spec.audiences == ["ca-signer"]


def test_the_kubernetes_reviewer_says_when_it_could_not_ask() -> None:
    api = TokenReviews(error=ApiException(status=403, reason="Forbidden"))
    with pytest.raises(ReviewUnavailable, match="TokenReview failed: 403 Forbidden"):
        KubernetesReviewer(api).review("t0ken", "ca-signer")
