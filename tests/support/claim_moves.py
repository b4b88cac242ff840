"""One table of annotation changes on an existing pod, run against both copies of the rule that a
pod's claim may not move to another Secret or mode (the kubelet keeps mounting what the pod was
created with).

``tests/unit/test_claim_moves.py`` runs every row through `mtls_operator.claims.claim_moved`;
``tests/e2e/test_claim_moves.py`` creates each row's pod with ``before`` and sends ``after`` to a
real API server as an annotation update (server-side dry run), judged by the chart's
ValidatingAdmissionPolicy hello-mtls-names: refused with exactly the operator's message, or
admitted. ``{ns}`` is the pod's namespace. Rows with ``pod_certificates`` hold only for an
install with ``podCertificates.enabled`` on.
"""

from __future__ import annotations

from dataclasses import dataclass

from mtls_contract.marks import (
    ANNOTATION_DURATION,
    ANNOTATION_MODE,
    ANNOTATION_NAME,
    ANNOTATION_SANS,
    ANNOTATION_SECRET,
    POD_CERTIFICATE,
)

__all__ = ["CASES", "Move"]

_ADVICE = "; change the pod template of its workload (or recreate the pod) instead"


def _secret_moved(annotation: str, before: str, after: str) -> str:
    return (
        f"{annotation}: a pod cannot move from Secret '{before}' to '{after}': the kubelet keeps"
        f" mounting '{before}', which would no longer be renewed{_ADVICE}"
    )


def _mode_moved(before: str, after: str) -> str:
    return (
        f"{ANNOTATION_MODE}: a pod created in {before} mode cannot move to {after} mode: the"
        f" kubelet keeps the volumes it was created with{_ADVICE}"
    )


@dataclass(frozen=True)
class Move:
    id: str
    before: dict[str, str]
    after: dict[str, str]
    error: str | None
    pod_certificates: bool = False

    def for_namespace(self, ns: str) -> tuple[dict[str, str], dict[str, str], str | None]:
        def fill(annotations: dict[str, str]) -> dict[str, str]:
            return {k: v.format(ns=ns) for k, v in annotations.items()}

        return fill(self.before), fill(self.after), self.error


WEB = {ANNOTATION_NAME: "web.{ns}.svc"}
PC = {ANNOTATION_MODE: POD_CERTIFICATE}
CASES = [
    Move(
        "secret-annotation-moves",
        WEB,
        {**WEB, ANNOTATION_SECRET: "elsewhere-tls"},
        _secret_moved(ANNOTATION_SECRET, "web-tls", "elsewhere-tls"),
    ),
    Move(
        "secret-annotation-changes",
        {**WEB, ANNOTATION_SECRET: "shared-tls"},
        {**WEB, ANNOTATION_SECRET: "other-tls"},
        _secret_moved(ANNOTATION_SECRET, "shared-tls", "other-tls"),
    ),
    Move(
        "secret-annotation-removed",
        {**WEB, ANNOTATION_SECRET: "shared-tls"},
        WEB,
        _secret_moved(ANNOTATION_SECRET, "shared-tls", "web-tls"),
    ),
    Move(
        "first-label-moves-the-secret",
        WEB,
        {ANNOTATION_NAME: "api.{ns}.svc"},
        _secret_moved(ANNOTATION_NAME, "web-tls", "api-tls"),
    ),
    Move(
        "first-label-with-a-fixed-secret",
        {**WEB, ANNOTATION_SECRET: "shared-tls"},
        {ANNOTATION_NAME: "api.{ns}.svc", ANNOTATION_SECRET: "shared-tls"},
        None,
    ),
    Move("default-secret-written-out", WEB, {**WEB, ANNOTATION_SECRET: "web-tls"}, None),
    Move("suffix-changes", WEB, {ANNOTATION_NAME: "web.{ns}"}, None),
    Move(
        "white-space",
        WEB,
        {ANNOTATION_NAME: " web.{ns}.svc\t", ANNOTATION_SECRET: " web-tls "},
        None,
    ),
    Move("sans-added", WEB, {**WEB, ANNOTATION_SANS: "web.{ns}"}, None),
    Move("duration-changes", WEB, {**WEB, ANNOTATION_DURATION: "2h"}, None),
    Move("default-mode-written-out", WEB, {**WEB, ANNOTATION_MODE: "secret"}, None),
    Move(
        "secret-to-pod-certificate",
        WEB,
        {**WEB, **PC},
        _mode_moved("secret", POD_CERTIFICATE),
        pod_certificates=True,
    ),
    Move(
        "pod-certificate-to-secret",
        {**WEB, **PC},
        WEB,
        _mode_moved(POD_CERTIFICATE, "secret"),
        pod_certificates=True,
    ),
    Move(
        "pod-certificate-renamed",
        {**WEB, **PC},
        {ANNOTATION_NAME: "api.{ns}.svc", ANNOTATION_SECRET: "other-tls", **PC},
        None,
        pod_certificates=True,
    ),
]
