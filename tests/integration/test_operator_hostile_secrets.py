"""Hostile managed Secrets against the operator's parts and a real ``hello-mtls-ca serve``.

Anyone who may create Secrets in a namespace the operator serves can label one
``hello-mtls.dev/managed=true`` and put into it what they like. cryptography loads an RSA key with
RSA key validation, with the GIL held: 5 to 7 s for an RSA-8192 key on this machine, 30 to 50 s
for an RSA-16384 one, 50 to 90 s for the RSA-16384 key of `support.hostile_secrets` (its larger
prime costs more). An operator that read such Secrets stalled for everyone.

The operator's parts run here as in its pod: a pool of 4 threads, as kopf's
(``settings.execution.max_workers`` in `mtls_operator.handlers`), calls the handlers the way kopf
calls them, and a `WorkQueue` of reconcile threads has the real CA sign over HTTPS with the
provisioner credential; only the API server is the in-memory `operator_fakes.Cluster`. The figures
are printed (``pytest -s``); the bound is generous, a stall only fails it.
"""

from __future__ import annotations

import concurrent.futures
import functools
import time
from collections.abc import Callable
from typing import Any, cast

import kopf

import mtls_operator.handlers as handlers
from harness.waiting import elapsed_until
from mtls_contract.marks import ANNOTATION_NAME, ANNOTATION_SERIAL
from mtls_operator.ca_client import CAClient
from mtls_operator.certs import inspect
from mtls_operator.inventory import Key
from mtls_operator.reconciler import Reconciler
from mtls_operator.settings import Settings
from mtls_operator.tlssecret import decode_data
from mtls_operator.workqueue import WorkQueue
from support import hostile_secrets as hostile
from support.operator_fakes import Cluster, pod

BOUND = 20.0
"""Seconds: an annotated pod's Secret takes about 0.3 s here; with the ten RSA-16384 Secrets, the
operator that read them had not written it after 300 s (the tier's bound)."""
KOPF_HANDLER_THREADS = 4
HOSTILE_SECRETS = 10


def test_a_hostile_secret_is_refused_in_milliseconds() -> None:
    """Each hostile Secret's inspection, timed; a stall fails only the RSA-16384 one's bound (the
    others cost little even unfixed: a chain of 10,000 certificates parses in about 0.1 s)."""
    cases = {
        "an RSA-16384 key": hostile.files(hostile.rsa_16384()),
        "an RSA-16384 modulus in a 2.9 KB key": hostile.files(hostile.rsa_with_modulus(16384)),
        "a DSA key": hostile.files(hostile.dsa()),
        "an Ed25519 key": hostile.files(hostile.ed25519_key()),
        "a chain of 10,000 certificates": hostile.files(
            hostile.rsa_with_modulus(2048), chain=hostile.certificate() * 10_000
        ),
    }
    seconds = {}
    for what, files in cases.items():
        data = decode_data(hostile.managed_secret("hostile-tls", "attic", files))
        started = time.perf_counter()
        found = inspect(data)
        seconds[what] = time.perf_counter() - started
        print(f"inspection of a Secret holding {what}: {seconds[what] * 1000:.2f} ms")
        assert found.problem is not None, what
    assert seconds["an RSA-16384 key"] < 2.0, "an RSA-16384 key took seconds to refuse"


def test_hostile_secrets_no_pod_claims_delay_no_pod(operator_ca_client: CAClient) -> None:
    """Ten managed Secrets holding an RSA-16384 key in namespace ``attic``, which no pod claims;
    then a pod in ``shop``, and a pod in ``attic`` that claims one of them. Both get a valid
    Secret within the bound (the claimed one re-issued); the nine others are left as they are."""
    cluster = Cluster()
    work: WorkQueue[Key]
    reconciler = Reconciler(
        cluster, operator_ca_client, Settings(), dispatch=lambda key: work.add(key)
    )
    work = WorkQueue[Key](reconciler.reconcile, workers=4)
    memo = kopf.Memo()
    memo.reconciler = reconciler
    reconciler.tick()  # the CA's state, as the operator's loop reads it first
    files = hostile.files(hostile.rsa_16384())
    bodies = [
        cluster.create_secret(hostile.managed_secret(f"hostile-{i}-tls", "attic", files))
        for i in range(HOSTILE_SECRETS)
    ]
    with concurrent.futures.ThreadPoolExecutor(KOPF_HANDLER_THREADS) as kopf_threads:
        handled = [
            kopf_threads.submit(_call, handlers.secret, body, "ADDED", memo) for body in bodies
        ]
        for key, name, annotations in (
            (("shop", "web-tls"), "web-1", {ANNOTATION_NAME: "web.shop.svc"}),
            (("attic", "hostile-0-tls"), "claimant", {ANNOTATION_NAME: "hostile-0.attic.svc"}),
        ):
            namespace = key[0]
            event = pod(name, annotations, ns=namespace)
            handled.append(kopf_threads.submit(_call, handlers.pod, event, None, memo))
            seconds = elapsed_until(
                f"a valid Secret {namespace}/{key[1]}",
                functools.partial(_issued, cluster, key),
                timeout=BOUND,
                interval=0.01,
            )
            print(f"pod {namespace}/{name} -> valid Secret {key[1]}: {seconds:.3f} s")
    for future in handled:
        future.result()  # no handler raised
    assert work.join(10)
    untouched = [b for b in bodies if cluster.secrets[_key(b)] == b]
    assert len(untouched) == HOSTILE_SECRETS - 1


def _call(handler: object, raw: dict[str, Any], event_type: str | None, memo: kopf.Memo) -> None:
    """Call a handler with the keyword arguments kopf passes that it uses."""
    fn = cast(Callable[..., None], handler)
    fn(body=kopf.Body(cast(kopf.RawBody, raw)), type=event_type, memo=memo, logger=None)


def _key(body: dict[str, Any]) -> Key:
    return body["metadata"]["namespace"], body["metadata"]["name"]


def _issued(cluster: Cluster, key: Key) -> bool:
    """Whether the operator wrote Secret ``key`` (the hostile ones lack its annotations) and
    what it holds is valid."""
    secret = cluster.secrets.get(key)
    if secret is None or ANNOTATION_SERIAL not in (secret["metadata"].get("annotations") or {}):
        return False
    return inspect(decode_data(secret)).problem is None
