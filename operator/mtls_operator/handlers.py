"""The kopf handlers. Thin on purpose: the work is in `mtls_operator.reconciler`.

* Pods are watched with ``on.event`` only: no finalizers, no ``last-handled-configuration`` and
  no progress annotations are ever written onto users' pods.
* Managed Secrets are watched with ``on.event`` too (server-side label selector), so a deleted
  or emptied Secret is healed at once, and no kopf diff-base (which would copy ``data`` into an
  annotation) is ever stored.
* The handlers only take note and queue the Secret's key (`workqueue.WorkQueue`); a fixed pool
  of threads does the work, so a burst of events costs keys in a queue, not event bodies.
* Renewal, retries with backoff, trust-bundle updates and root rotation run in one
  cluster-level loop started at startup, not in timers or daemons on pods.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from mtls_operator import config, kube, metrics
from mtls_operator.ca_client import CAClient
from mtls_operator.claims import NAME
from mtls_operator.inventory import Key
from mtls_operator.reconciler import Reconciler
from mtls_operator.tlssecret import LABEL_MANAGED
from mtls_operator.workqueue import WorkQueue

_LOOP_SECONDS = 1.0
_HANDLER_THREADS = 4
_KOPF_WORKER_IDLE_SECONDS = 0.5


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Configure kopf, connect to the cluster and the CA, start metrics and the loop."""
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
    reconciler: Reconciler
    work = WorkQueue[Key](lambda key: reconciler.reconcile(key), workers=cfg.max_workers)
    reconciler = Reconciler(
        kube.Kube(pool_size=cfg.max_workers + 4),
        CAClient(cfg.ca_url, cfg.provisioner_dir),
        cfg.settings,
        dispatch=work.add,
    )
    memo.reconciler = reconciler
    metrics.QUEUE_DEPTH.set_function(lambda: len(work))
    metrics.serve(cfg.metrics_port)
    memo.loop = asyncio.create_task(_loop(memo.reconciler))


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """Stop the reconcile loop."""
    memo.loop.cancel()


@kopf.on.event("pods", annotations={NAME: kopf.PRESENT})
def pod(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    """An annotated pod appeared, changed, was listed again or went away."""
    memo.reconciler.pod_event(body, type)


@kopf.on.event("secrets", labels={LABEL_MANAGED: "true"})
def secret(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    """A managed Secret changed or was deleted."""
    memo.reconciler.secret_event(body, type)


async def _loop(reconciler: Reconciler) -> None:
    log = logging.getLogger("mtls_operator")
    while True:
        try:
            await asyncio.to_thread(reconciler.tick)
        except Exception:  # one bad pass must not end renewals for everyone
            log.exception("reconcile pass failed")
        await asyncio.sleep(_LOOP_SECONDS)
