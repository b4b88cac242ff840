"""One namespace that churns pods cannot starve another's (issue "Issuance never stops"): the
operator's work queue lets namespaces take turns, so a pod in a quiet namespace gets its Secret
after a turn or two, not behind every pod of the busy one.

The operator's parts run as in its pod (`Reconciler`, a `WorkQueue` grouped as
`mtls_operator.handlers` groups it, the real CA signing over HTTPS with the provisioner
credential); only the API server is the in-memory `operator_fakes.Cluster`. Run with ``-s`` for
the figures.
"""

from __future__ import annotations

import functools
from typing import Any, cast

import kopf

from harness.waiting import elapsed_until
from mtls_contract.marks import ANNOTATION_NAME, ANNOTATION_SERIAL
from mtls_operator.ca_client import CAClient
from mtls_operator.inventory import Key, namespace_of
from mtls_operator.reconciler import Reconciler
from mtls_operator.settings import Settings
from mtls_operator.workqueue import WorkQueue
from support.operator_fakes import Cluster, pod

CHURN = 200
WORKERS = 2  # as few as can overlap, so that the order shows


def _issued(cluster: Cluster, key: Key) -> bool:
    secret = cluster.secrets.get(key)
    return secret is not None and ANNOTATION_SERIAL in secret["metadata"].get("annotations", {})


def test_a_quiet_namespace_is_served_while_a_busy_one_churns(operator_ca_client: CAClient) -> None:
    cluster = Cluster()
    work: WorkQueue[Key]
    reconciler = Reconciler(
        cluster, operator_ca_client, Settings(), dispatch=lambda key: work.add(key)
    )
    work = WorkQueue[Key](reconciler.reconcile, workers=WORKERS, group=namespace_of)
    reconciler.tick()  # the CA's state, as the operator's loop reads it first
    for n in range(CHURN):
        _added(reconciler, pod(f"churn-{n}", {ANNOTATION_NAME: f"app-{n}.busy.svc"}, ns="busy"))
    busy_before = _busy_done(cluster)
    _added(reconciler, pod("web-1", {ANNOTATION_NAME: "web.quiet.svc"}, ns="quiet"))
    quiet = ("quiet", "web-tls")
    seconds = elapsed_until(
        "the quiet namespace's Secret",
        functools.partial(_issued, cluster, quiet),
        timeout=60,
        interval=0.005,
    )
    busy_between = _busy_done(cluster) - busy_before
    print(
        f"\nquiet/web-tls after {seconds:.3f} s; {busy_before} of {CHURN} busy Secrets were"
        f" written before its pod came, {busy_between} between its pod and its Secret"
    )
    # Its key came after all of busy's: in one line, every busy key still waiting goes first.
    # Taking turns, the keys in hand and one more go first, and the other worker goes on while
    # one writes quiet's Secret: a handful (5 here), never a tenth.
    assert busy_between < CHURN // 10 < CHURN - busy_before
    assert work.join(120)
    assert _busy_done(cluster) == CHURN


def _added(reconciler: Reconciler, raw: dict[str, Any]) -> None:
    """The pod event kopf delivers for a new pod (the handler's one call)."""
    reconciler.pod_event(kopf.Body(cast(kopf.RawBody, raw)), None)


def _busy_done(cluster: Cluster) -> int:
    return sum(_issued(cluster, ("busy", f"app-{n}-tls")) for n in range(CHURN))
