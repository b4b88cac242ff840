"""The kopf handlers as kopf registers them, and called the way kopf calls them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import kopf
import pytest

import mtls_operator.handlers as handlers
from mtls_contract.marks import ANNOTATION_NAME
from mtls_operator.reconciler import Reconciler
from mtls_operator.settings import Settings
from support.operator_fakes import CA, Clock, Cluster, pod

REGISTRY = kopf.get_default_registry()


def call(handler: object, raw: dict[str, Any], event_type: str | None, memo: kopf.Memo) -> None:
    """Call a handler with the keyword arguments kopf passes that it uses."""
    fn = cast(Callable[..., None], handler)
    fn(body=kopf.Body(cast(kopf.RawBody, raw)), type=event_type, memo=memo, logger=None)


def test_nothing_writes_kopf_state_onto_pods_or_secrets() -> None:
    """No changing handlers, timers or daemons: no finalizers, diff-base or progress storage."""
    assert REGISTRY._changing.get_all_handlers() == []
    assert REGISTRY._spawning.get_all_handlers() == []
    assert REGISTRY._indexing.get_all_handlers() == []
    watched = {
        str(h.selector.any_name): h for h in REGISTRY._watching.get_all_handlers() if h.selector
    }
    assert set(watched) == {"pods", "secrets"}
    assert watched["pods"].annotations == {ANNOTATION_NAME: kopf.PRESENT}
    assert watched["secrets"].labels == {"hello-mtls.dev/managed": "true"}


def test_the_pod_and_secret_handlers_feed_the_reconciler() -> None:
    cluster, ca, clock = Cluster(), CA(), Clock()
    memo = kopf.Memo()
    memo.reconciler = Reconciler(
        cluster, ca, Settings(), clock=lambda: clock.now, monotonic=lambda: clock.mono
    )
    call(handlers.pod, pod("web-1", {ANNOTATION_NAME: "web.shop.svc"}), None, memo)
    assert ("shop", "web-tls") in cluster.secrets
    secret = cluster.secrets.pop(("shop", "web-tls"))
    call(handlers.secret, secret, "DELETED", memo)
    assert ("shop", "web-tls") in cluster.secrets and ca.signed == 2


@pytest.mark.parametrize("deleting", [True, False])
def test_a_deleting_pod_gets_nothing(deleting: bool) -> None:
    cluster, ca, clock = Cluster(), CA(), Clock()
    memo = kopf.Memo()
    memo.reconciler = Reconciler(
        cluster, ca, Settings(), clock=lambda: clock.now, monotonic=lambda: clock.mono
    )
    body = pod("web-1", {ANNOTATION_NAME: "web.shop.svc"})
    if deleting:
        body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    call(handlers.pod, body, "MODIFIED", memo)
    assert (("shop", "web-tls") in cluster.secrets) is not deleting
