"""The reconciler against an in-memory API server stand-in and the real CA core.

Fast checks of the orchestration (what is written, when, how often); the real API server,
kubelet and CA service are exercised by the e2e tier.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import REGISTRY

from mtls_ca.tls_profiles import policy_bytes
from mtls_context.layout import CERT, KEY, POLICY
from mtls_contract.marks import (
    ANNOTATION_DURATION,
    ANNOTATION_INTERMEDIATE,
    ANNOTATION_MODE,
    ANNOTATION_NAME,
    ANNOTATION_RENEW,
    ANNOTATION_SECRET,
    ANNOTATION_SERIAL,
    ANNOTATION_VERSION,
    LABEL_MANAGED,
)
from mtls_operator import inventory, metrics
from mtls_operator.certs import Inspection, inspect, sha256_hex
from mtls_operator.claims import Rules
from mtls_operator.pod_certificate_signer import Signer
from mtls_operator.reconciler import Reconciler
from mtls_operator.scope import Scope
from mtls_operator.settings import Settings
from mtls_operator.tlssecret import POLICY_CONFIG_MAP, decode_data
from support import hostile_secrets as hostile
from support.operator_fakes import CA, Clock, Cluster, PodCertificateRequests, pod

UTC = datetime.UTC


@pytest.fixture
def cluster() -> Cluster:
    return Cluster()


@pytest.fixture
def ca() -> CA:
    return CA()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def reconciler(
    cluster: Cluster,
    ca: CA,
    clock: Clock,
    dispatch: Callable[[tuple[str, str]], None] | None = None,
    *,
    pod_certificates: bool = False,
    leading: Callable[[], bool] = lambda: True,
    **settings: Any,
) -> Reconciler:
    """A reconciler on the fakes; ``pod_certificates``: the install signs pod certificates;
    ``leading``: whether this replica may work."""
    if pod_certificates:
        settings["rules"] = Rules(pod_certificates=True)
    return Reconciler(
        cluster,
        ca,
        Settings(**settings),
        clock=lambda: clock.now,
        monotonic=lambda: clock.mono,
        dispatch=dispatch,
        signer_name=SIGNER if pod_certificates else "",
        leading=leading,
    )


SIGNER = "hello-mtls.dev/pod-certificate"


WEB = {ANNOTATION_NAME: "web.shop.svc"}


def owners(cluster: Cluster, name: str = "web-tls") -> list[str]:
    return [r["uid"] for r in cluster.secrets[("shop", name)]["metadata"]["ownerReferences"]]


def test_an_annotated_pod_gets_a_valid_secret_owned_by_it(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    r = reconciler(cluster, ca, clock)
    r.tick()
    r.pod_event(pod("web-1", WEB), None)
    secret = cluster.secrets[("shop", "web-tls")]
    assert secret["metadata"]["labels"][LABEL_MANAGED] == "true"
    found = inspect(decode_data(secret))
    assert found.problem is None
    assert found.intermediate_sha256 == ca.status().intermediate_sha256
    assert owners(cluster) == ["uid-web-1"]
    assert [e[2] for e in cluster.events] == ["Issued"]
    assert cluster.annotations == {}  # a new Secret needs no nudge


def test_events_only_queue_keys_when_a_dispatcher_is_given(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    """The operator's handlers return at once: the work goes to the queue's threads."""
    queued: list[tuple[str, str]] = []
    r = reconciler(cluster, ca, clock, dispatch=queued.append)
    r.tick()
    r.pod_event(pod("web-1", WEB), None)
    r.pod_event(pod("web-2", WEB), None)
    assert queued == [("shop", "web-tls")] * 2 and cluster.secrets == {}
    r.reconcile(queued[0])
    assert ("shop", "web-tls") in cluster.secrets and ca.signed == 1
    assert owners(cluster) == ["uid-web-1", "uid-web-2"]


def test_one_identity_is_never_issued_twice_at_once(cluster: Cluster, ca: CA, clock: Clock) -> None:
    """Threads that reconcile one key at the same moment take turns; the second finds it done."""
    queued: list[tuple[str, str]] = []
    r = reconciler(cluster, ca, clock, dispatch=queued.append)
    r.tick()
    r.pod_event(pod("web-1", WEB), None)
    sign, inside, release = ca.sign, threading.Event(), threading.Event()

    def slow_sign(request: Any) -> Any:
        inside.set()
        release.wait(10)
        return sign(request)

    ca.sign = slow_sign  # type: ignore[method-assign]
    threads = [threading.Thread(target=r.reconcile, args=(queued[0],)) for _ in range(4)]
    for thread in threads:
        thread.start()
    assert inside.wait(10)
    release.set()
    for thread in threads:
        thread.join(10)
    assert ca.signed == 1 and len(cluster.secrets) == 1


def test_replicas_share_one_secret_issued_once(cluster: Cluster, ca: CA, clock: Clock) -> None:
    r = reconciler(cluster, ca, clock)
    for name in ("web-1", "web-2", "web-3"):
        r.pod_event(pod(name, WEB), None)
        r.pod_event(pod(name, WEB), "MODIFIED")
    assert ca.signed == 1
    assert owners(cluster) == ["uid-web-1", "uid-web-2", "uid-web-3"]


def test_a_restarted_operator_reuses_valid_secrets(cluster: Cluster, ca: CA, clock: Clock) -> None:
    reconciler(cluster, ca, clock).pod_event(pod("web-1", WEB), None)
    writes = cluster.writes
    again = reconciler(cluster, ca, clock)
    again.secret_event(cluster.get_secret("shop", "web-tls") or {}, None)
    again.pod_event(pod("web-1", WEB), None)
    again.tick()
    assert ca.signed == 1 and cluster.writes == writes


def test_an_emptied_secret_is_reissued_and_the_pods_nudged(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    r = reconciler(cluster, ca, clock)
    r.pod_event(pod("web-1", WEB), None)
    serial = cluster.secrets[("shop", "web-tls")]["metadata"]["annotations"][ANNOTATION_SERIAL]
    emptied = cluster.get_secret("shop", "web-tls") or {}
    emptied["data"] = {}
    r.secret_event(cluster.replace_secret(emptied), "MODIFIED")
    secret = cluster.secrets[("shop", "web-tls")]
    assert secret["metadata"]["annotations"][ANNOTATION_SERIAL] != serial
    assert inspect(decode_data(secret)).problem is None
    assert cluster.annotations[("shop", "web-1")] == {
        ANNOTATION_VERSION: secret["metadata"]["resourceVersion"]
    }


def test_a_renew_annotation_reissues_once_and_is_dropped(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    """``hello-mtls renew`` annotates the Secret; the new Secret drops the request, so the next
    event (or a restarted operator) issues nothing more."""
    r = reconciler(cluster, ca, clock)
    r.pod_event(pod("web-1", WEB), None)
    serial = cluster.secrets[("shop", "web-tls")]["metadata"]["annotations"][ANNOTATION_SERIAL]
    asked = cluster.get_secret("shop", "web-tls") or {}
    asked["metadata"]["annotations"][ANNOTATION_RENEW] = "2026-12-07T10:00:00Z"
    r.secret_event(cluster.replace_secret(asked), "MODIFIED")
    renewed = cluster.secrets[("shop", "web-tls")]
    assert renewed["metadata"]["annotations"][ANNOTATION_SERIAL] != serial
    assert ANNOTATION_RENEW not in renewed["metadata"]["annotations"]
    r.secret_event(cluster.get_secret("shop", "web-tls") or {}, "MODIFIED")
    r.tick()
    assert ca.signed == 2


def test_a_deleted_secret_is_reissued(cluster: Cluster, ca: CA, clock: Clock) -> None:
    r = reconciler(cluster, ca, clock)
    r.pod_event(pod("web-1", WEB), None)
    gone = cluster.secrets.pop(("shop", "web-tls"))
    r.secret_event(gone, "DELETED")
    assert ca.signed == 2 and ("shop", "web-tls") in cluster.secrets


def test_a_swapped_key_is_healed(cluster: Cluster, ca: CA, clock: Clock) -> None:
    r = reconciler(cluster, ca, clock)
    r.pod_event(pod("web-1", WEB), None)
    r.pod_event(pod("api-1", {ANNOTATION_NAME: "api.shop.svc"}), None)
    web = cluster.get_secret("shop", "web-tls") or {}
    web["data"][KEY] = cluster.secrets[("shop", "api-tls")]["data"][KEY]
    r.secret_event(cluster.replace_secret(web), "MODIFIED")
    assert inspect(decode_data(cluster.secrets[("shop", "web-tls")])).problem is None
    assert ca.signed == 3


def test_a_certificate_for_other_names_under_the_right_claim_is_reissued(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    r = reconciler(cluster, ca, clock)
    r.tick()
    r.pod_event(pod("web-1", WEB), None)
    r.pod_event(pod("api-1", {ANNOTATION_NAME: "api.shop.svc"}), None)
    web = cluster.get_secret("shop", "web-tls") or {}
    api = cluster.secrets[("shop", "api-tls")]["data"]
    web["data"][CERT], web["data"][KEY] = api[CERT], api[KEY]  # the claim annotation stays web's
    r.secret_event(cluster.replace_secret(web), "MODIFIED")
    assert ca.signed == 3
    assert inspect(decode_data(cluster.secrets[("shop", "web-tls")])).names == {"web.shop.svc"}


def test_changed_annotations_reissue_at_once(cluster: Cluster, ca: CA, clock: Clock) -> None:
    r = reconciler(cluster, ca, clock)
    r.pod_event(pod("web-1", WEB), None)
    r.pod_event(pod("web-1", {**WEB, ANNOTATION_DURATION: "2h"}), "MODIFIED")
    found = inspect(decode_data(cluster.secrets[("shop", "web-tls")]))
    assert ca.signed == 2 and found.problem is None


def test_a_claim_moved_to_another_secret_warns_the_pod_once(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    """The names policy refuses the move; if it got through anyway, the pod says that what it
    mounts is no longer renewed (the message is claims.claim_moved's)."""
    r = reconciler(cluster, ca, clock)
    r.pod_event(pod("web-1", WEB), None)
    moved = pod("web-1", {**WEB, ANNOTATION_SECRET: "elsewhere-tls"})
    for _ in range(2):
        r.pod_event(moved, "MODIFIED")
    warnings = [e for e in cluster.events if e[1] == "Warning"]
    assert warnings == [
        (
            "web-1",
            "Warning",
            "ClaimMoved",
            "hello-mtls.dev/secret: a pod cannot move from Secret 'web-tls' to 'elsewhere-tls':"
            " the kubelet keeps mounting 'web-tls', which would no longer be renewed; change the"
            " pod template of its workload (or recreate the pod) instead",
        )
    ]


def test_bad_annotations_get_one_warning_and_no_secret(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    r = reconciler(cluster, ca, clock)
    bad = pod("web-1", {ANNOTATION_NAME: "web.other.svc"})
    for event_type in (None, "MODIFIED", "MODIFIED"):
        r.pod_event(bad, event_type)
    assert cluster.secrets == {}
    assert cluster.events == [
        (
            "web-1",
            "Warning",
            "InvalidAnnotation",
            "hello-mtls.dev/name: name 'web.other.svc' is not under namespace 'shop'",
        )
    ]
    r.pod_event(pod("web-1", WEB), "MODIFIED")
    assert ("shop", "web-tls") in cluster.secrets


def test_a_pod_certificate_pod_gets_no_secret(cluster: Cluster, ca: CA, clock: Clock) -> None:
    """In pod-certificate mode the kubelet holds the key; the operator only signs its requests."""
    r = reconciler(cluster, ca, clock, pod_certificates=True)
    r.pod_event(pod("web-1", {**WEB, ANNOTATION_MODE: "pod-certificate"}), None)
    r.tick()
    assert cluster.secrets == {} and cluster.events == [] and ca.signed == 0
    r.pod_event(pod("web-1", {**WEB, ANNOTATION_MODE: "secret"}), "MODIFIED")
    assert ("shop", "web-tls") in cluster.secrets
    r.pod_event(pod("web-1", {**WEB, ANNOTATION_MODE: "pod-certificate"}), "MODIFIED")
    clock.advance(20 * 3600)
    r.tick()
    assert ca.signed == 1  # no longer renewed for a pod that left Secret mode


POD_CERTIFICATE = {ANNOTATION_MODE: "pod-certificate"}


def policy_file(cluster: Cluster, namespace: str = "shop") -> bytes:
    """The ``tls-policy.json`` a pod-certificate pod's projected volume gets."""
    return str(cluster.config_maps[(namespace, POLICY_CONFIG_MAP)]["data"][POLICY]).encode()


def test_the_first_pod_certificate_pod_gets_the_tls_policy_config_map_on_its_event(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    """The kubelet cannot start the pod without it, so it must not wait for the resync."""
    r = reconciler(cluster, ca, clock, pod_certificates=True)
    r.tick()
    r.pod_event(pod("web-1", {**WEB, **POD_CERTIFICATE}), None)
    config_map = cluster.config_maps[("shop", POLICY_CONFIG_MAP)]
    assert config_map["metadata"]["labels"] == {LABEL_MANAGED: "true"}
    assert policy_file(cluster) == policy_bytes(ca.state.tls_policy)
    assert cluster.secrets == {} and cluster.events == []
    writes = cluster.writes
    r.pod_event(pod("web-1", {**WEB, **POD_CERTIFICATE}), "MODIFIED")
    r.pod_event(pod("web-2", {**WEB, **POD_CERTIFICATE}), None)
    clock.advance(60)
    r.tick()
    assert cluster.writes == writes  # one ConfigMap per namespace, written once
    r.pod_event(
        pod("api-1", {ANNOTATION_NAME: "api.shop.svc"}), None
    )  # a Secret-mode pod beside them
    assert decode_data(cluster.secrets[("shop", "api-tls")])[POLICY] == policy_file(cluster)


def test_secret_mode_pods_get_no_config_map(cluster: Cluster, ca: CA, clock: Clock) -> None:
    r = reconciler(cluster, ca, clock, pod_certificates=True)
    r.tick()
    r.pod_event(pod("web-1", WEB), None)
    r.pod_event(pod("api-1", {ANNOTATION_NAME: "api.shop.svc", ANNOTATION_MODE: "secret"}), None)
    clock.advance(60)
    r.tick()
    assert cluster.config_maps == {} and len(cluster.secrets) == 2


def test_a_pod_seen_before_the_ca_state_gets_the_config_map_on_the_first_tick(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    r = reconciler(cluster, ca, clock, pod_certificates=True)
    r.pod_event(pod("web-1", {**WEB, **POD_CERTIFICATE}), None)
    assert cluster.config_maps == {}  # the TLS policy is not known before the CA is read
    r.tick()
    assert policy_file(cluster) == policy_bytes(ca.state.tls_policy)


def test_the_config_map_follows_a_tls_policy_change_with_the_secrets(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    r = reconciler(cluster, ca, clock, pod_certificates=True)
    r.tick()
    r.pod_event(pod("web-1", {**WEB, **POD_CERTIFICATE}), None)
    r.pod_event(pod("api-1", {ANNOTATION_NAME: "api.shop.svc"}), None)
    before = policy_file(cluster)
    ca.state = dataclasses.replace(ca.state, tls_profile="modern")
    clock.advance(60)
    r.tick()
    assert policy_file(cluster) == policy_bytes(ca.state.tls_policy) != before
    assert decode_data(cluster.secrets[("shop", "api-tls")])[POLICY] == policy_file(cluster)


def test_a_deleted_config_map_is_made_again_for_the_next_pod(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    r = reconciler(cluster, ca, clock, pod_certificates=True)
    r.tick()
    r.pod_event(pod("web-1", {**WEB, **POD_CERTIFICATE}), None)
    del cluster.config_maps[("shop", POLICY_CONFIG_MAP)]
    r.pod_event(pod("web-2", {**WEB, **POD_CERTIFICATE}), None)
    assert policy_file(cluster) == policy_bytes(ca.state.tls_policy)


def test_a_failed_config_map_write_is_tried_again_at_the_resync(
    cluster: Cluster, ca: CA, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = reconciler(cluster, ca, clock, pod_certificates=True)
    r.tick()

    def refuse(body: dict[str, Any]) -> dict[str, Any]:
        raise OSError("connection reset")

    create = cluster.create_config_map
    monkeypatch.setattr(cluster, "create_config_map", refuse)
    r.pod_event(pod("web-1", {**WEB, **POD_CERTIFICATE}), None)
    assert cluster.config_maps == {}
    monkeypatch.setattr(cluster, "create_config_map", create)
    clock.advance(60)
    r.tick()
    assert policy_file(cluster) == policy_bytes(ca.state.tls_policy)


def test_a_config_map_not_made_by_the_operator_is_left_alone(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    theirs = {"metadata": {"namespace": "shop", "name": POLICY_CONFIG_MAP}, "data": {"x": "y"}}
    cluster.create_config_map(theirs)
    r = reconciler(cluster, ca, clock, pod_certificates=True)
    r.tick()
    for event_type in (None, "MODIFIED"):
        r.pod_event(pod("web-1", {**WEB, **POD_CERTIFICATE}), event_type)
        clock.advance(60)
        r.tick()
    assert cluster.config_maps[("shop", POLICY_CONFIG_MAP)]["data"] == {"x": "y"}
    assert cluster.writes == 1
    assert cluster.events == [
        (
            "web-1",
            "Warning",
            "ConfigMapNotManaged",
            f"ConfigMap '{POLICY_CONFIG_MAP}' exists and is not managed by hello-mtls; it is left"
            " alone: delete it so that the operator can write the TLS policy this pod's volume"
            " needs",
        )
    ]
    del cluster.config_maps[("shop", POLICY_CONFIG_MAP)]  # its owner deleted it
    clock.advance(60)
    r.tick()
    assert policy_file(cluster) == policy_bytes(ca.state.tls_policy)


def test_pod_certificate_mode_without_the_signer_is_a_bad_annotation(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    """The admission policy refuses such a pod with the same message; without the policy the
    pod gets it as an Event, and no Secret."""
    r = reconciler(cluster, ca, clock)
    r.pod_event(pod("web-1", {**WEB, ANNOTATION_MODE: "pod-certificate"}), None)
    r.tick()
    assert cluster.secrets == {} and ca.signed == 0
    assert cluster.events == [
        (
            "web-1",
            "Warning",
            "InvalidAnnotation",
            "hello-mtls.dev/mode: pod-certificate is not enabled in this installation"
            " (chart value podCertificates.enabled); use secret",
        )
    ]
    assert cluster.config_maps == {}


def test_two_claims_on_one_secret_warn_and_do_not_flap(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    r = reconciler(cluster, ca, clock)
    r.pod_event(pod("web-1", {**WEB, ANNOTATION_SECRET: "shared"}), None)
    for _ in range(3):
        r.pod_event(
            pod("api-1", {ANNOTATION_NAME: "api.shop.svc", ANNOTATION_SECRET: "shared"}), "MODIFIED"
        )
        r.pod_event(pod("web-1", {**WEB, ANNOTATION_SECRET: "shared"}), "MODIFIED")
        clock.advance(60)
        r.tick()
    assert ca.signed == 1
    assert owners(cluster, "shared") == ["uid-web-1"]
    conflicts = [e for e in cluster.events if e[2] == "SecretConflict"]
    assert len(conflicts) == 1 and conflicts[0][0] == "api-1"
    assert "serves web.shop.svc" in conflicts[0][3]


def test_a_secret_not_made_by_the_operator_is_left_alone(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    mine = {"metadata": {"namespace": "shop", "name": "web-tls"}, "data": {"x": "eQ=="}}
    cluster.create_secret(mine)
    r = reconciler(cluster, ca, clock)
    r.pod_event(pod("web-1", WEB), None)
    assert cluster.secrets[("shop", "web-tls")]["data"] == {"x": "eQ=="}
    assert [e[2] for e in cluster.events] == ["SecretNotManaged"]


@pytest.mark.parametrize("label", ["false", "True", "yes", ""])
def test_a_secret_labelled_managed_but_not_true_is_left_alone(
    cluster: Cluster, ca: CA, clock: Clock, label: str
) -> None:
    theirs = {
        "metadata": {"namespace": "shop", "name": "web-tls", "labels": {LABEL_MANAGED: label}},
        "data": {"x": "eQ=="},
    }
    cluster.create_secret(theirs)
    r = reconciler(cluster, ca, clock)
    r.tick()
    r.pod_event(pod("web-1", WEB), None)
    clock.advance(60)
    r.tick()
    assert cluster.secrets[("shop", "web-tls")]["data"] == {"x": "eQ=="}
    assert cluster.writes == 1 and ca.signed == 0
    assert [e[2] for e in cluster.events] == ["SecretNotManaged"]


def test_a_managed_secret_no_pod_claims_is_not_read(
    cluster: Cluster, ca: CA, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone who may create Secrets in a served namespace can label one managed=true: what it
    holds is read only once a pod claims it, and then it is re-issued, the Event says why."""
    read: list[Mapping[str, bytes]] = []

    def recorded(data: Mapping[str, bytes]) -> Inspection:
        read.append(data)
        return inspect(data)

    monkeypatch.setattr(inventory, "inspect", recorded)
    queued: list[tuple[str, str]] = []
    r = reconciler(cluster, ca, clock, dispatch=queued.append)
    r.tick()
    files = hostile.files(hostile.rsa_with_modulus(16384))
    body = cluster.create_secret(hostile.managed_secret("web-tls", "shop", files))
    for event_type in (None, "MODIFIED", "MODIFIED"):
        r.secret_event(body, event_type)
    clock.advance(60)
    r.tick()
    assert read == [] and queued == []
    r.pod_event(pod("web-1", WEB), None)
    r.reconcile(queued.pop())
    assert len(read) == 2  # the Secret as read, then as written
    assert inspect(decode_data(cluster.secrets[("shop", "web-tls")])).problem is None
    (issued,) = cluster.events
    assert issued[:3] == ("web-1", "Normal", "Issued")
    assert (
        "(tls.key is an RSA key of 16384 bits; hello-mtls makes only ECDSA P-256/P-384 and RSA"
        " 2048/3072/4096 keys), valid until" in issued[3]
    )


def test_a_secret_whose_key_is_encrypted_is_reissued(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    """cryptography raises TypeError, not ValueError, for an encrypted key: that must not end a
    handler nor leave the Secret broken."""
    r = reconciler(cluster, ca, clock)
    r.tick()
    r.pod_event(pod("web-1", WEB), None)
    secret = cluster.get_secret("shop", "web-tls") or {}
    secret["data"][KEY] = base64.b64encode(hostile.encrypted()).decode()
    r.secret_event(cluster.replace_secret(secret), "MODIFIED")
    assert ca.signed == 2
    assert inspect(decode_data(cluster.secrets[("shop", "web-tls")])).problem is None
    assert "(tls.key holds ENCRYPTED PRIVATE KEY;" in cluster.events[-1][3]


def test_ca_down_warns_retries_with_backoff_and_recovers(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    r = reconciler(cluster, ca, clock)
    ca.down = True
    r.pod_event(pod("web-1", WEB), None)
    assert cluster.secrets == {}
    assert [e[2] for e in cluster.events] == ["CAUnreachable"]
    ca.down = False
    clock.advance(0.5)
    r.tick()
    assert cluster.secrets == {}  # the first retry is due after 1 s
    clock.advance(0.6)
    r.tick()
    assert ("shop", "web-tls") in cluster.secrets


def test_renewal_happens_in_the_loop_at_the_fraction(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    r = reconciler(cluster, ca, clock, renew_fraction=0.5)
    r.pod_event(pod("web-1", WEB), None)
    clock.advance(11 * 3600)
    r.tick()
    assert ca.signed == 1
    clock.advance(2 * 3600)
    r.tick()
    assert ca.signed == 2
    assert cluster.annotations[("shop", "web-1")][ANNOTATION_VERSION]


def test_root_rotation_advances_only_when_every_secret_follows(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    r = reconciler(cluster, ca, clock, rotation_grace=datetime.timedelta(seconds=30))
    r.pod_event(pod("web-1", WEB), None)
    r.pod_event(pod("api-1", {ANNOTATION_NAME: "api.shop.svc"}), None)
    old_root = ca.state.bundle_pem
    ca.rotate_root("idle")  # what `hello-mtls-ca rotate-root` does
    phases = []
    for _ in range(200):
        clock.advance(1)
        r.tick()
        phases.append(ca.state.phase)
        for secret in cluster.secrets.values():
            data = decode_data(secret)
            if ca.state.phase == "new-signing":
                assert old_root in data["ca.crt"]  # leaves move only while both roots are trusted
    assert phases.index("new-signing") >= 30
    assert phases[-1] == "idle"
    for secret in cluster.secrets.values():
        data = decode_data(secret)
        assert old_root not in data["ca.crt"]
        assert sha256_hex(data["ca.crt"]) == ca.state.bundle_sha256
        assert inspect(data).intermediate_sha256 == ca.status().intermediate_sha256
        assert data["tls-policy.json"] == policy_bytes(ca.state.tls_policy)
    assert CERT


def test_rotation_waits_for_every_ca_signer_to_serve_the_phase(
    cluster: Cluster, ca: CA, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    r = reconciler(cluster, ca, clock, rotation_grace=datetime.timedelta(seconds=5))
    r.pod_event(pod("web-1", WEB), None)
    ca.rotate_root("idle")
    ca.lagging_signers = ["10.0.0.7:8444"]  # still serves idle's material
    with caplog.at_level(logging.INFO, logger="mtls_operator"):
        for _ in range(60):
            clock.advance(1)
            r.tick()
    assert ca.state.phase == "both-trusted"
    assert "waits for CA signers to serve the root holder's material: 10.0.0.7:8444" in caplog.text
    ca.down = True  # the root holder cannot be asked: no step either
    for _ in range(3):
        clock.advance(1)
        r.tick()
    ca.down, ca.lagging_signers = False, []
    for _ in range(60):
        clock.advance(1)
        r.tick()
        if ca.state.phase == "new-signing":
            break
    assert ca.state.phase == "new-signing"


def test_rotation_waits_for_the_operators_own_credential(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    r = reconciler(cluster, ca, clock, rotation_grace=datetime.timedelta(seconds=5))
    r.pod_event(pod("web-1", WEB), None)
    ca.mounted_credential = ca.issue_credential()
    ca.rotate_root("idle")
    for _ in range(30):  # its ca.crt lacks the new root: both-trusted must wait
        clock.advance(1)
        r.tick()
    assert ca.state.phase == "both-trusted"
    ca.mounted_credential = ca.issue_credential()  # the CA renewed it; the kubelet updated it
    for _ in range(60):
        clock.advance(1)
        r.tick()
        if ca.state.phase == "new-signing":
            break
    assert ca.state.phase == "new-signing"
    for _ in range(60):  # the kubelet has not updated the operator's volume yet
        clock.advance(1)
        r.tick()
    assert ca.state.phase == "new-signing"
    ca.mounted_credential = ca.issue_credential()  # now from the new intermediate
    for _ in range(30):
        clock.advance(1)
        r.tick()
    assert ca.state.phase == "idle"


def pod_certificate_pod(
    name: str,
    intermediate: str | None = None,
    *,
    phase: str = "Running",
    signer_name: str = SIGNER,
) -> dict[str, Any]:
    """A pod in pod-certificate mode as the wiring policy and the kubelet leave it; annotated
    with the intermediate of its certificate when the signer did."""
    body = pod(name, {**WEB, **POD_CERTIFICATE})
    if intermediate is not None:
        body["metadata"]["annotations"][ANNOTATION_INTERMEDIATE] = intermediate
    source = {"podCertificate": {"signerName": signer_name, "keyType": "ECDSAP256"}}
    body["spec"]["volumes"] = [{"name": "hello-mtls", "projected": {"sources": [source]}}]
    body["status"] = {"phase": phase}
    return body


def kubelet_request(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The PodCertificateRequest the kubelet creates for ``body``'s volume: a fresh key."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    meta = body["metadata"]
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "PodCertificateRequest",
        "metadata": {"name": name, "namespace": meta["namespace"], "uid": f"uid-{name}"},
        "spec": {
            "signerName": SIGNER,
            "podName": meta["name"],
            "podUID": meta["uid"],
            "serviceAccountName": body["spec"]["serviceAccountName"],
            "maxExpirationSeconds": 86400,
            "stubPKCS10Request": base64.b64encode(
                csr.public_bytes(serialization.Encoding.DER)
            ).decode(),
            "unverifiedUserAnnotations": {ANNOTATION_NAME: meta["annotations"][ANNOTATION_NAME]},
        },
    }


def until_new_signing(r: Reconciler, ca: CA, clock: Clock) -> None:
    ca.rotate_root("idle")  # what `hello-mtls-ca rotate-root` does
    # Both-trusted lasts the grace, or with pod-certificate pods KUBELET_PROJECTION_DELAY.
    for _ in range(180):
        clock.advance(1)
        r.tick()
        if ca.state.phase == "new-signing":
            return
    raise AssertionError(f"the rotation stayed in {ca.state.phase}")


def test_root_rotation_waits_for_pod_certificate_pods_to_hold_the_new_intermediate(
    cluster: Cluster, ca: CA, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The old root goes only once every running pod-certificate pod holds a certificate from
    the new intermediate; the signer's annotation says which one signed it."""
    api = PodCertificateRequests()  # on the CA's clock: the reconciler's runs minutes ahead
    signer = Signer(
        api,
        ca,
        signer_name=SIGNER,
        rules=Rules(pod_certificates=True),
        scope=Scope(own="hello-mtls"),
        refresh_fraction=2 / 3,
    )
    r = reconciler(
        cluster, ca, clock, pod_certificates=True, rotation_grace=datetime.timedelta(seconds=30)
    )
    r.tick()
    web_1 = pod_certificate_pod("web-1")
    api.pods[("shop", "web-1")] = web_1["metadata"]["uid"]
    signer.offer(api.add(kubelet_request(web_1, "req-1")))
    old = ca.status().intermediate_sha256
    assert api.annotations[("shop", "web-1")] == {ANNOTATION_INTERMEDIATE: old}
    web_1["metadata"]["annotations"].update(api.annotations[("shop", "web-1")])
    r.pod_event(web_1, None)
    r.pod_event(pod_certificate_pod("web-2"), None)  # issued by an operator before this one
    r.pod_event(pod_certificate_pod("web-3", phase="Pending"), None)  # waits for its first
    r.pod_event(pod_certificate_pod("web-4", signer_name="example.com/other"), None)
    r.pod_event(
        pod("api-1", {ANNOTATION_NAME: "api.shop.svc"}), None
    )  # a Secret-mode pod beside them
    until_new_signing(r, ca, clock)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mtls_operator"):
        for _ in range(180):
            clock.advance(1)
            r.tick()
    assert ca.state.phase == "new-signing"
    assert metrics.ROTATION_PENDING._value.get() == 0  # every Secret is done
    assert metrics.ROTATION_PENDING_PODS._value.get() == 2
    named = [m for m in caplog.messages if "pod-certificate pods" in m]
    assert len(named) == 3  # once a minute
    assert named[0] == (
        "root-rotation phase new-signing waits for 2 pod-certificate pods to hold a certificate"
        " from the new intermediate (the kubelet asks at each one's beginRefreshAt):"
        " shop/web-1, shop/web-2"
    )
    for name, request in (("web-1", "req-2"), ("web-2", "req-3")):  # beginRefreshAt came
        refreshed = pod_certificate_pod(name)
        api.pods[("shop", name)] = refreshed["metadata"]["uid"]
        signer.offer(api.add(kubelet_request(refreshed, request)))
        refreshed["metadata"]["annotations"].update(api.annotations[("shop", name)])
        r.pod_event(refreshed, "MODIFIED")
        # KUBELET_PROJECTION_DELAY: the kubelet puts the certificate into the pod on its resync.
        for _ in range(130):
            clock.advance(1)
            r.tick()
        assert ca.state.phase == ("new-signing" if name == "web-1" else "idle")
    assert api.annotations[("shop", "web-1")][ANNOTATION_INTERMEDIATE] != old
    assert metrics.ROTATION_PENDING_PODS._value.get() == 0


def test_the_pod_certificate_gate_survives_a_restart(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    """What a pod's certificate came from is on the pod, so a restarted operator (a fresh
    reconciler, fed the pods again by kopf's list) still waits for it."""
    grace = datetime.timedelta(seconds=30)
    r = reconciler(cluster, ca, clock, pod_certificates=True, rotation_grace=grace)
    r.tick()
    old = ca.status().intermediate_sha256
    r.pod_event(pod_certificate_pod("web-1", old), None)
    until_new_signing(r, ca, clock)
    restarted = reconciler(cluster, ca, clock, pod_certificates=True, rotation_grace=grace)
    restarted.pod_event(pod_certificate_pod("web-1", old), None)
    for _ in range(120):
        clock.advance(1)
        restarted.tick()
    assert ca.state.phase == "new-signing"
    new = ca.status().intermediate_sha256
    restarted.pod_event(pod_certificate_pod("web-1", new), "MODIFIED")
    for _ in range(130):
        clock.advance(1)
        restarted.tick()
    assert ca.state.phase == "idle"


# Two replicas: a leader works, a standby only keeps count ----------------------------------


class Leadership:
    """Whether a replica leads, switched by the test (`leadership.Elector.leading` in the
    operator)."""

    def __init__(self, leading: bool) -> None:
        self.now = leading

    def __call__(self) -> bool:
        return self.now


def test_a_standby_takes_in_events_but_writes_signs_and_posts_nothing(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    queued: list[tuple[str, str]] = []
    r = reconciler(
        cluster, ca, clock, dispatch=queued.append, pod_certificates=True, leading=Leadership(False)
    )
    ca.rotate_root("idle")  # an admin started a root rotation: only a leader moves it on
    r.tick()
    r.pod_event(pod("web-1", WEB), None)
    r.pod_event(pod("bad-1", {ANNOTATION_NAME: "web.other.svc"}), None)
    r.pod_event(pod("pc-1", {ANNOTATION_NAME: "pc.shop.svc", **POD_CERTIFICATE}), None)
    r.secret_event({"metadata": {"namespace": "shop", "name": "web-tls"}}, "DELETED")
    r.reconcile(("shop", "web-tls"))
    for _ in range(200):
        clock.advance(1)
        r.tick()
    assert queued == [] and ca.signed == 0 and ca.state.phase == "both-trusted"
    assert (cluster.writes, cluster.events, cluster.annotations) == (0, [], {})


def test_a_new_leader_catches_up_on_what_the_dead_one_had_queued(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    """The leader queued keys and died before working them off; the standby, which saw the same
    events, issues each Secret once when it takes over, and warns the bad pod once."""
    dead: list[tuple[str, str]] = []
    leader = reconciler(cluster, ca, clock, dispatch=dead.append, pod_certificates=True)
    standing_by = Leadership(False)
    standby = reconciler(cluster, ca, clock, pod_certificates=True, leading=standing_by)
    leader.tick()
    pods = [
        pod("web-1", WEB),
        pod("api-1", {ANNOTATION_NAME: "api.shop.svc"}),
        pod("bad-1", {ANNOTATION_NAME: "web.other.svc"}),
        pod("pc-1", {ANNOTATION_NAME: "pc.shop.svc", **POD_CERTIFICATE}),
    ]
    for body in pods:
        leader.pod_event(body, None)
        standby.pod_event(body, None)
    assert dead == [("shop", "web-tls"), ("shop", "api-tls")]
    events = list(cluster.events)  # the dead leader's InvalidAnnotation
    standing_by.now = True
    standby.take_over()
    standby.tick()
    assert set(cluster.secrets) == {("shop", "web-tls"), ("shop", "api-tls")} and ca.signed == 2
    assert ("shop", POLICY_CONFIG_MAP) in cluster.config_maps
    new = [e[1:3] for e in cluster.events[len(events) :]]
    assert sorted(new) == [
        ("Normal", "Issued"),
        ("Normal", "Issued"),
        ("Warning", "InvalidAnnotation"),
    ]
    clock.advance(60)
    standby.tick()
    assert ca.signed == 2 and len(cluster.events) == len(events) + 3


def test_each_secret_is_exported_with_the_serial_and_validity_it_holds(
    cluster: Cluster, ca: CA, clock: Clock
) -> None:
    """What the stale-certificate alert compares the pods' certificates with."""

    def exported() -> dict[str, dict[str, float]]:
        families = {
            "hello_mtls_operator_secret_not_before_timestamp_seconds": "not_before",
            "hello_mtls_operator_secret_not_after_timestamp_seconds": "not_after",
        }
        found: dict[str, dict[str, float]] = {}
        for family in REGISTRY.collect():
            for sample in family.samples:
                if sample.name in families and sample.labels["secret_namespace"] == "shop":
                    assert sample.labels["identity"] == "web.shop.svc"
                    assert sample.labels["secret"] == "web-tls"
                    found.setdefault(sample.labels["serial"], {})[families[sample.name]] = (
                        sample.value
                    )
        return found

    r = reconciler(cluster, ca, clock, renew_fraction=0.5)
    r.pod_event(pod("web-1", WEB), None)
    r.tick()
    first = inspect(decode_data(cluster.secrets[("shop", "web-tls")]))
    assert first.not_before and first.not_after
    assert exported() == {
        first.serial: {
            "not_before": first.not_before.timestamp(),
            "not_after": first.not_after.timestamp(),
        }
    }
    clock.advance(13 * 3600)  # past half of 24 h: renewed
    r.tick()
    clock.advance(11)
    r.tick()
    second = inspect(decode_data(cluster.secrets[("shop", "web-tls")]))
    assert second.serial != first.serial
    assert list(exported()) == [second.serial]


def test_the_rotation_phase_is_exported(cluster: Cluster, ca: CA, clock: Clock) -> None:
    def phases() -> dict[str, float]:
        return {
            phase: REGISTRY.get_sample_value("hello_mtls_operator_rotation_phase", {"phase": phase})
            or 0.0
            for phase in ("idle", "both-trusted", "new-signing")
        }

    r = reconciler(cluster, ca, clock)
    r.pod_event(pod("web-1", WEB), None)
    r.tick()
    assert phases() == {"idle": 1, "both-trusted": 0, "new-signing": 0}
    ca.rotate_root("idle")
    clock.advance(10)
    r.tick()
    assert phases() == {"idle": 0, "both-trusted": 1, "new-signing": 0}
