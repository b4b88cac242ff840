"""The kopf handlers. Thin on purpose: the work is in `mtls_operator.reconciler`.

* Pods are watched with ``on.event`` only: no finalizers, no ``last-handled-configuration`` and
  no progress annotations are ever written onto users' pods.
* Managed Secrets are watched with ``on.event`` too (server-side label selector), so a deleted
  or emptied Secret is healed at once, and no kopf diff-base (which would copy ``data`` into an
  annotation) is ever stored. Anyone who may create Secrets in a watched namespace can set the
  label, so the handler reads only Secrets a pod claims (`Reconciler.secret_event`), and what it
  reads is bounded before it is parsed (`screening`).
* The handlers only take note and queue the Secret's key (`workqueue.WorkQueue`); a fixed pool
  of threads does the work, so a burst of events costs keys in a queue, not event bodies, and
  the namespaces take turns in it (a namespace that churns cannot starve the others). The
  one exception: for a pod in pod-certificate mode the pod handler itself reads, and if need be
  writes, the namespace's TLS-policy ConfigMap, since the kubelet cannot start the pod without
  it (one read per new pod, a write per namespace and TLS policy).
* Renewal, retries with backoff, trust-bundle updates and root rotation run in one
  cluster-level loop started at startup, not in timers or daemons on pods.
* With ``HELLO_MTLS_POD_CERTIFICATE_SIGNER`` set, the pod-certificate signer
  (`pod_certificate_signer.Signer`) runs beside them: its own list+watch thread (kopf cannot watch
  with a server-side field selector, and the requests of other signers are none of ours), its
  own work queue, and its retries and trust bundle in the same loop.
* Two replicas run; the one holding the Lease (`leadership.Elector`, on a thread of its own)
  works, the other only keeps its watches and its inventory current. The loop, the work
  queues and the signer ask `leadership.Elector.leading`; the signer's watch starts when this
  replica wins, and the reconciler then makes a full pass (`Reconciler.take_over`). A leader
  that loses the Lease exits at once (as client-go's users do): Kubernetes restarts it as a
  standby. On SIGTERM it stops working and releases the Lease.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from typing import Any

import kopf

from mtls_contract.marks import ANNOTATION_NAME, LABEL_MANAGED
from mtls_operator import config, kube, metrics
from mtls_operator.bundle_fetcher import FederatedBundles
from mtls_operator.ca_client import CAClient
from mtls_operator.inventory import Key, namespace_of
from mtls_operator.leadership import Elector, Timing
from mtls_operator.pod_certificate_signer import Signer
from mtls_operator.reconciler import Reconciler
from mtls_operator.workqueue import WorkQueue

_LOOP_SECONDS = 1.0
_RELEASE_SECONDS = 15.0  # a Lease round under way and the release: two calls of 3.5 s each
_HANDLER_THREADS = 4
_CA_SERVICE = "hello-mtls-ca"
_KOPF_WORKER_IDLE_SECONDS = 0.5


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Configure kopf, connect to the cluster and the CA, start metrics, the election, the loop."""
    cfg = config.from_environment()
    settings.posting.enabled = False  # Events are posted by mtls_operator.kube
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.watching.label_selectors["secrets"] = f"{LABEL_MANAGED}=true"
    settings.scanning.disabled = True
    # The handlers only note what changed and queue the Secret's key, so a few threads serve
    # them; the work (keys, CSRs, POST /sign, Secret writes) runs on the queue's threads.
    settings.execution.max_workers = _HANDLER_THREADS
    # A finished per-object worker of kopf keeps its last event body until it exits.
    settings.queueing.idle_timeout = _KOPF_WORKER_IDLE_SECONDS
    kube.load_config()
    cluster = kube.Kube(pool_size=2 * cfg.max_workers + 4)
    signers: Callable[[], list[str]] | None = None
    if cfg.ca_root_url:
        # CA signer pods serve cfg.ca_url (the Service hello-mtls-ca in the operator's own
        # namespace): a root rotation waits for each of them (docs/ca.md).
        signers = functools.partial(
            cluster.ready_endpoints, cfg.lease_namespace, _CA_SERVICE, "sign"
        )

    ca_client = CAClient(cfg.ca_url, cfg.provisioner_dir, root_url=cfg.ca_root_url, signers=signers)
    reconciler: Reconciler
    signer: Signer | None = None
    memo.stop_signer = threading.Event()

    def lead() -> None:
        metrics.LEADER.set(1)
        reconciler.take_over()
        if signer is not None:
            threading.Thread(
                target=signer.run, args=(memo.stop_signer,), name="pod-certificates", daemon=True
            ).start()

    # The pod name, and a token so that a restarted process never takes its predecessor's
    # Lease for its own (pod names have no "_").
    identity = f"{socket.gethostname()}_{secrets.token_hex(4)}"
    timing = Timing()
    elector = Elector(
        # A renewal (a read and a write) fits in the renew deadline even when both are slow.
        kube.LeaseAPI(cluster, request_timeout=timing.renew_deadline_seconds / 2),
        namespace=cfg.lease_namespace,
        identity=identity,
        timing=timing,
        on_lead=lead,
        on_lost=_exit,
    )
    leading = elector.leading
    work = WorkQueue[Key](
        lambda key: reconciler.reconcile(key), workers=cfg.max_workers, group=namespace_of
    )
    reconciler = Reconciler(
        cluster,
        ca_client,
        cfg.settings,
        dispatch=work.add,
        signer_name=cfg.pod_certificate_signer,
        leading=leading,
        federation=FederatedBundles(cfg.federation) if cfg.federation else None,
    )
    memo.reconciler = reconciler
    if cfg.pod_certificate_signer:
        requests = WorkQueue[Key](
            lambda key: signer.answer(key) if signer is not None and leading() else None,
            workers=cfg.max_workers,
            group=namespace_of,
        )
        signer = Signer(
            kube.PodCertificateAPI(cluster),
            ca_client,
            signer_name=cfg.pod_certificate_signer,
            rules=cfg.settings.rules,
            scope=cfg.scope,
            refresh_fraction=cfg.pod_certificate_refresh_fraction,
            status_seconds=cfg.settings.status_seconds,
            dispatch=requests.add,
        )
    memo.signer = signer
    metrics.LEADER.set(0)
    metrics.QUEUE_DEPTH.set_function(lambda: len(work))
    metrics.serve(cfg.metrics_port)
    memo.elector = elector
    memo.election = threading.Thread(target=elector.run, name="leader-election", daemon=True)
    memo.election.start()
    memo.loop = asyncio.create_task(_loop(memo.reconciler, memo.signer, leading))


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """Stop working, the reconcile loop and the signer's watch; release the Lease if held."""
    memo.elector.stop()
    memo.stop_signer.set()
    memo.loop.cancel()
    await asyncio.to_thread(memo.election.join, _RELEASE_SECONDS)


@kopf.on.event("pods", annotations={ANNOTATION_NAME: kopf.PRESENT})
def pod(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    """An annotated pod appeared, changed, was listed again or went away."""
    memo.reconciler.pod_event(body, type)


@kopf.on.event("secrets", labels={LABEL_MANAGED: "true"})
def secret(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    """A managed Secret changed or was deleted."""
    memo.reconciler.secret_event(body, type)


async def _loop(reconciler: Reconciler, signer: Signer | None, leading: Callable[[], bool]) -> None:
    log = logging.getLogger("mtls_operator")
    while True:
        for tick in (reconciler.tick, signer.tick if signer and leading() else None):
            if tick is None:
                continue
            try:
                await asyncio.to_thread(tick)
            except Exception:  # one bad pass must not end renewals for everyone
                log.exception("reconcile pass failed")
        await asyncio.sleep(_LOOP_SECONDS)


def _exit() -> None:
    """The Lease is lost: stop every thread at once, so that none writes after the successor
    started (a write already sent carries its resourceVersion and fails if it is stale)."""
    os._exit(1)
