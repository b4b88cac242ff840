"""What to do with one Secret, and who gets it when pods disagree. Pure functions.

`decide` is the whole healing policy: it looks at the Secret as it is (`certs.Inspection`), at the
claim it should serve and at what the CA hands out now, and answers with one `Decision`. The
names and SPIFFE ID are read from the certificate itself: the claim digest in the Secret's
annotations only says which claim it was issued for, and anyone who may edit the Secret may
edit that too. It is
level-triggered: the same inputs always give the same answer, so calling it again after a
restart, a relist or a duplicate event changes nothing that is already right.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from mtls_ca.tls_profiles import policy_bytes
from mtls_operator.ca_view import CAView
from mtls_operator.certs import Inspection, needs_renewal, normalize_name
from mtls_operator.claims import Claim, ClaimingPod

__all__ = ["Action", "Decision", "choose_claim", "decide"]


class Action(enum.Enum):
    """What a Secret needs."""

    NOTHING = "nothing"
    ISSUE = "issue"
    """A new key and certificate (the old ones cannot serve, or renewal is due)."""
    REFRESH_TRUST = "refresh-trust"
    """New ``ca.crt`` and ``tls-policy.json``; the leaf and key stay."""


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    """Why, in a few words (``renewal due``, ``tls.key does not match tls.crt``...)."""


def decide(
    claim: Claim,
    secret: Inspection | None,
    secret_claim: str | None,
    ca: CAView | None,
    *,
    now: datetime.datetime,
    fraction: float,
    renew_requested: bool = False,
) -> Decision:
    """Decide what the Secret of ``claim`` needs.

    Args:
        claim: what the pods ask for.
        secret: the inspected Secret, or None when it does not exist.
        secret_claim: the claim digest stored on the Secret when it was issued.
        ca: what the CA hands out now; None when it is not known (CA unreachable): then only
            what the Secret shows by itself is judged.
        now: the current time (UTC).
        fraction: renew once this fraction of the lifetime has passed.
        renew_requested: the Secret carries ``hello-mtls.dev/renew`` (``hello-mtls renew``).
    """
    if secret is None:
        return Decision(Action.ISSUE, "no Secret")
    if secret.problem is not None:
        return Decision(Action.ISSUE, secret.problem)
    if renew_requested:
        return Decision(Action.ISSUE, "renewal requested")
    if secret_claim != claim.digest:
        return Decision(Action.ISSUE, "annotations changed")
    if secret.names != {normalize_name(name) for name in claim.names}:
        return Decision(Action.ISSUE, "certificate names differ from the claim")
    assert secret.not_before is not None and secret.not_after is not None
    if now >= secret.not_after:
        return Decision(Action.ISSUE, "certificate expired")
    if needs_renewal(secret.not_before, secret.not_after, now, fraction):
        return Decision(Action.ISSUE, "renewal due")
    if ca is None:
        return Decision(Action.NOTHING, "CA state unknown")
    if secret.serial in ca.revoked_serials:
        return Decision(Action.ISSUE, "certificate revoked")
    if secret.uris != (claim.spiffe_id(ca.trust_domain),):
        return Decision(Action.ISSUE, "certificate SPIFFE ID differs from the claim")
    if secret.intermediate_sha256 != ca.intermediate_sha256:
        return Decision(Action.ISSUE, "not signed by the current intermediate")
    if secret.bundle_sha256 != ca.bundle_sha256:
        return Decision(Action.REFRESH_TRUST, "trust bundle changed")
    if secret.policy != policy_bytes(ca.tls_policy):
        return Decision(Action.REFRESH_TRUST, "TLS policy changed")
    if secret.crl_sha256 != ca.crl_sha256:
        return Decision(Action.REFRESH_TRUST, "CRL changed")
    if secret.federated_sha256 != ca.federated_sha256:
        return Decision(Action.REFRESH_TRUST, "federated bundles changed")
    return Decision(Action.NOTHING, "up to date")


def choose_claim(
    pods: Sequence[ClaimingPod], secret_claim: str | None
) -> tuple[Claim, list[ClaimingPod], list[ClaimingPod]]:
    """Pick the claim one Secret serves when several pods name it, and split the pods.

    The claim already in the Secret wins, so an existing certificate is never replaced because
    a second pod disagrees; otherwise the oldest pod's claim wins (ties by name). Either way the
    answer does not depend on event order, so two disagreeing pods cannot make it flap.

    Pods whose annotations are invalid (``claim`` None) take no part.

    Returns:
        The winning claim, the pods that agree with it, and the pods that do not.

    Raises:
        ValueError: if no pod in ``pods`` has a claim.
    """
    by_age = sorted(
        ((p, p.claim) for p in pods if p.claim is not None),
        key=lambda pc: (pc[0].created, pc[0].name),
    )
    if not by_age:
        raise ValueError("no pods claim this Secret")
    winner = next((c for _, c in by_age if c.digest == secret_claim), by_age[0][1])
    agree = [p for p, c in by_age if c.digest == winner.digest]
    disagree = [p for p, c in by_age if c.digest != winner.digest]
    return winner, agree, disagree
