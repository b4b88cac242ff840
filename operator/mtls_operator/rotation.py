"""When to move the CA's root rotation on: after every managed Secret (and every pod-certificate
pod) shows the current phase.

The CA's state machine (``idle`` → ``both-trusted`` → ``new-signing`` → ``idle``) is started by an
administrator (``hello-mtls-ca rotate-root``). The operator moves it on, one step at a time and
only once every Secret it manages reflects the phase the CA is in, plus a grace period for the
kubelet to put the files into the pods and for the apps to reload them:

* ``both-trusted``: every Secret's ``ca.crt`` holds the old and the new root. Then the CA may sign
  with the new intermediate, because every peer already trusts its root.
* ``new-signing``: every leaf is signed by the new intermediate. Then the old root may go. A
  pod-certificate pod has no Secret: the signer annotates it with the intermediate of each
  certificate it issues it (`mtls_contract.marks.ANNOTATION_INTERMEDIATE`), and the kubelet asks
  for a new one only at ``beginRefreshAt``, so this step may wait up to 2/3 of their lifetime.

A pod-certificate pod's files (the ClusterTrustBundle's roots, the certificate the signer issued)
reach it only when the kubelet rewrites its projected volume on its periodic pod resync (every 1
to 1.5 minutes by default), which the operator cannot nudge as it nudges a Secret's pods. So while
such pods exist, each step waits at least `KUBELET_PROJECTION_DELAY` instead of the grace.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from mtls_contract.phases import Phase
from mtls_operator.ca_view import CAView
from mtls_operator.certs import Inspection

__all__ = [
    "ADVANCING_PHASES",
    "KUBELET_PROJECTION_DELAY",
    "RotationGate",
    "needs_new_leaves",
    "reflects",
]

ADVANCING_PHASES = (Phase.BOTH_TRUSTED, Phase.NEW_SIGNING)
KUBELET_PROJECTION_DELAY = datetime.timedelta(minutes=2)
"""How long the kubelet may take to put a changed ClusterTrustBundle or a newly issued certificate
into a running pod: its pod resync period (``syncFrequency``, 1 minute by default, jittered up to
1.5) plus the write and the app's reload."""


def needs_new_leaves(ca: CAView) -> bool:
    """Whether the CA's phase waits for every leaf to come from its current intermediate."""
    return ca.phase == Phase.NEW_SIGNING


def reflects(secret: Inspection, ca: CAView) -> bool:
    """Whether ``secret`` already shows what the CA's current phase needs."""
    if secret.problem is not None or secret.bundle_sha256 != ca.bundle_sha256:
        return False
    if needs_new_leaves(ca):
        return secret.intermediate_sha256 == ca.intermediate_sha256
    return True


@dataclass
class RotationGate:
    """Remembers since when every Secret reflects the CA's phase.

    Call `step` on every pass of the reconcile loop; it answers the phase to advance *from*
    (the body of ``POST /rotate-root``) once the grace has passed, else None.
    """

    grace: datetime.timedelta
    _phase: str | None = None
    _ready_since: datetime.datetime | None = None

    def step(
        self,
        phase: str,
        pending: int,
        now: datetime.datetime,
        *,
        pod_certificates: bool = False,
    ) -> str | None:
        """Report the CA's ``phase`` and how many Secrets (and pods) do not reflect it yet;
        ``pod_certificates``: whether pod-certificate pods run (they need
        `KUBELET_PROJECTION_DELAY` to see the bundle or the certificate the phase gave them).

        Returns:
            ``phase`` when it is time to advance from it, else None.
        """
        if phase != self._phase:
            self._phase = phase
            self._ready_since = None
        if pending:
            self._ready_since = None
        elif self._ready_since is None:
            self._ready_since = now
        if phase not in ADVANCING_PHASES or self._ready_since is None:
            return None
        grace = self.grace
        if pod_certificates:
            grace = max(grace, KUBELET_PROJECTION_DELAY)
        if now - self._ready_since < grace:
            return None
        # Start the grace afresh: the CA answers 409 to a repeated step, but it need not be asked.
        self._ready_since = now
        return phase

    @property
    def ready_since(self) -> datetime.datetime | None:
        """When every Secret first reflected the current phase (None while some do not)."""
        return self._ready_since
