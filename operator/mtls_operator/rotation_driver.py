"""Moves the CA's root rotation on once every Secret, pod and CA signer shows its phase.

`rotation` decides when (pure: `rotation.RotationGate`, `rotation.reflects`); this module gathers
what it decides on (the inventory's Secrets and pod-certificate pods, the operator's own
credential, the CA signers), exports it as metrics, names the pods a step waits for, and asks
the CA to advance. The reconciler (`reconciler.Reconciler.tick`) calls `RotationDriver.drive`
about once a second with the CA's state.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable

from mtls_contract.phases import Phase
from mtls_operator import metrics
from mtls_operator.ca_view import CAView
from mtls_operator.certs import inspect
from mtls_operator.claims import ClaimingPod
from mtls_operator.inventory import Inventory
from mtls_operator.ports import CAService, CAUnavailable
from mtls_operator.rotation import RotationGate, needs_new_leaves, reflects

__all__ = ["RotationDriver"]

_BEHIND_LOG_SECONDS = 60.0  # how often the pods a root rotation waits for are named

_log = logging.getLogger("mtls_operator")


class RotationDriver:
    """Advances the CA's root rotation, one phase at a time, when nothing lags behind."""

    def __init__(
        self,
        ca_service: CAService,
        inventory: Inventory,
        *,
        grace: datetime.timedelta,
        clock: Callable[[], datetime.datetime],
        monotonic: Callable[[], float],
    ) -> None:
        self._ca_service = ca_service
        self._inventory = inventory
        self._gate = RotationGate(grace=grace)
        self._clock = clock
        self._monotonic = monotonic
        self._behind_logged_at = -float("inf")

    def drive(self, ca: CAView) -> bool:
        """Export the rotation's progress; advance the CA when the gate opens.

        Returns:
            True if the CA was asked to advance: its state should be read again.
        """
        known = self._inventory.known_claimed()
        pending = sum(1 for k in known if k is None or not reflects(k.inspection, ca))
        if ca.phase != Phase.IDLE and not self._own_credential_reflects(ca):
            pending += 1
        metrics.ROTATION_PENDING.set(pending if ca.phase != Phase.IDLE else 0)
        metrics.show_rotation_phase(ca.phase)
        # A pod-certificate pod has no Secret; the signer's annotation on it says which
        # intermediate signed its certificate. It cannot be made to renew: it waits for the
        # kubelet to ask again at beginRefreshAt.
        behind = (
            self._inventory.pod_certificates_not_from(ca.intermediate_sha256)
            if needs_new_leaves(ca)
            else []
        )
        metrics.ROTATION_PENDING_PODS.set(len(behind))
        if behind:
            self._name_pods_behind(ca.phase, behind)
        if ca.phase != Phase.IDLE and not pending and not behind:
            # Every Secret and pod shows the phase; every CA signer must serve it too, or one
            # a fetch behind would sign from an intermediate the next phase stops trusting.
            pending += self._signers_behind(ca.phase)
        advance = self._gate.step(
            ca.phase,
            pending + len(behind),
            self._clock(),
            pod_certificates=bool(self._inventory.pod_certificate_namespaces()),
        )
        if advance is None:
            return False
        _log.info(
            "every Secret and pod-certificate pod reflects root-rotation phase %s;"
            " advancing the CA",
            advance,
        )
        try:
            self._ca_service.rotate_root(advance)
        except CAUnavailable as error:
            _log.warning("could not advance the root rotation: %s", error)
        return True

    def _signers_behind(self, phase: str) -> int:
        try:
            lagging = self._ca_service.signers_behind()
        except CAUnavailable as error:
            _log.warning(
                "root-rotation phase %s waits: cannot compare the CA signers: %s", phase, error
            )
            return 1
        if lagging:
            _log.info(
                "root-rotation phase %s waits for CA signers to serve the root holder's"
                " material: %s",
                phase,
                ", ".join(lagging),
            )
        return len(lagging)

    def _name_pods_behind(self, phase: str, behind: list[ClaimingPod]) -> None:
        now = self._monotonic()
        if now - self._behind_logged_at < _BEHIND_LOG_SECONDS:
            return
        self._behind_logged_at = now
        shown = ", ".join(f"{pod.namespace}/{pod.name}" for pod in behind[:10])
        more = f" and {len(behind) - 10} more" if len(behind) > 10 else ""
        _log.info(
            "root-rotation phase %s waits for %d pod-certificate pods to hold a certificate from"
            " the new intermediate (the kubelet asks at each one's beginRefreshAt): %s%s",
            phase,
            len(behind),
            shown,
            more,
        )

    def _own_credential_reflects(self, ca: CAView) -> bool:
        # The CA renews the operator's credential when its signer changes, but the kubelet may
        # take a minute to update the operator's own volume; leaving new-signing before then
        # would drop the root that the mounted credential still chains to.
        try:
            own = inspect(self._ca_service.credential())
        except OSError as error:
            _log.warning("cannot read the provisioner credential: %s", error)
            return True
        return own.problem is not None or reflects(own, ca)
