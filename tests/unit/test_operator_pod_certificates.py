"""The pod-certificate signer against an in-memory API server that validates status writes the
way kube-apiserver does (`support.operator_fakes.status_problems`), and the real CA core.

The real CA service is exercised in tests/integration/test_operator_ca_client.py; the real API
server and kubelet by the e2e tier.
"""

from __future__ import annotations

import base64
import copy
import datetime
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from mtls_ca import authority
from mtls_contract.marks import (
    ANNOTATION_INTERMEDIATE,
    ANNOTATION_MODE,
    ANNOTATION_NAME,
    ANNOTATION_SANS,
    POD_CERTIFICATE,
)
from mtls_operator import metrics
from mtls_operator.claims import Rules
from mtls_operator.pod_certificate_signer import Signer
from mtls_operator.pod_certificates import (
    DENIED,
    ISSUED,
    Refused,
    bundle_name,
    certificate_intermediate,
    is_final,
    issued_status,
    sign_request,
)
from mtls_operator.scope import Scope
from support.operator_fakes import (
    CA,
    POD_CERTIFICATE_CLAIM,
    Clock,
    PodCertificateRequests,
    status_problems,
)

SIGNER = "hello-mtls.dev/pod-certificate"
HOUR = datetime.timedelta(hours=1)
RULES = Rules(pod_certificates=True)  # the signer runs only then
SCOPE = Scope(own="hello-mtls")


def stub_csr(key: Any) -> str:
    """What the kubelet sends: an empty PKCS#10 request signed by the pod's new key."""
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, algorithm)
    return base64.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode()


def pcr(
    name: str = "req-1",
    relayed: dict[str, str] | None = None,
    *,
    ns: str = "shop",
    key: Any = None,
    max_seconds: int = 86400,
    signer: str = SIGNER,
) -> dict[str, Any]:
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "PodCertificateRequest",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}"},
        "spec": {
            "signerName": signer,
            "podName": f"pod-{name}",
            "podUID": f"pod-uid-{name}",
            "serviceAccountName": "web",
            "serviceAccountUID": "sa-uid",
            "nodeName": "node-1",
            "nodeUID": "node-uid",
            "maxExpirationSeconds": max_seconds,
            "stubPKCS10Request": stub_csr(key or ec.generate_private_key(ec.SECP256R1())),
            # What the volume's userAnnotations say, relayed by the node: never read.
            "unverifiedUserAnnotations": {ANNOTATION_NAME: "web.shop.svc"}
            if relayed is None
            else relayed,
        },
    }


def stored(request: dict[str, Any], claim: dict[str, str] | None = None) -> dict[str, Any]:
    """The request's pod as the API server stores it, annotated ``claim``."""
    spec = request["spec"]
    annotations = POD_CERTIFICATE_CLAIM if claim is None else claim
    return {
        "metadata": {
            "namespace": request["metadata"]["namespace"],
            "name": spec["podName"],
            "uid": spec["podUID"],
            "annotations": annotations,
        }
    }


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def api(clock: Clock) -> PodCertificateRequests:
    return PodCertificateRequests(clock)


@pytest.fixture
def ca() -> CA:
    return CA()


def signer(
    api: PodCertificateRequests, ca: CA, clock: Clock, *, fraction: float = 2 / 3, **rules: Any
) -> Signer:
    return Signer(
        api,
        ca,
        signer_name=SIGNER,
        rules=Rules(pod_certificates=True, **rules),
        scope=SCOPE,
        refresh_fraction=fraction,
        clock=lambda: clock.now,
        monotonic=lambda: clock.mono,
    )


def status(api: PodCertificateRequests, name: str = "req-1") -> dict[str, Any]:
    return dict(api.requests[("shop", name)].get("status") or {})


def test_the_sign_request_carries_the_kubelets_key_names_and_service_account() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    request = pcr(key=key, max_seconds=7200)
    claim = {**POD_CERTIFICATE_CLAIM, ANNOTATION_SANS: "api.shop.svc"}
    body = sign_request(request, stored(request, claim), rules=RULES)
    assert body["names"] == ["web.shop.svc", "api.shop.svc"]
    assert (body["namespace"], body["service_account"]) == ("shop", "web")
    # The CA backdates by a minute: notAfter - notBefore is then exactly maxExpirationSeconds.
    assert body["duration"] == "1h59m"
    assert x509.load_pem_x509_csr(body["csr"].encode()).public_key() == key.public_key()


def test_a_pkix_public_key_is_sent_bare_when_there_is_no_stub_request() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    request = pcr()
    del request["spec"]["stubPKCS10Request"]
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    request["spec"]["pkixPublicKey"] = base64.b64encode(der).decode()
    body = sign_request(request, stored(request), rules=RULES)
    assert "csr" not in body
    assert serialization.load_pem_public_key(body["public_key"].encode()) == key.public_key()


def test_the_lifetime_is_capped_at_the_cas_maximum() -> None:
    request = pcr(max_seconds=91 * 86400)
    body = sign_request(request, stored(request), rules=RULES)
    assert body["duration"] == "29d23h59m"


NOT_OPTED_IN = (
    "pod 'pod-req-1' did not opt in: this signer signs only pods annotated hello-mtls.dev/name"
    " and hello-mtls.dev/mode: pod-certificate"
)


@pytest.mark.parametrize(
    ("claim", "reason", "message"),
    [
        (
            {ANNOTATION_NAME: "db.bank.svc", ANNOTATION_MODE: POD_CERTIFICATE},
            "InvalidAnnotations",
            "hello-mtls.dev/name: name 'db.bank.svc' is not under namespace 'shop'",
        ),
        (
            {**POD_CERTIFICATE_CLAIM, ANNOTATION_SANS: "10.96.0.1"},
            "InvalidAnnotations",
            "hello-mtls.dev/sans: IP address '10.96.0.1' is not allowed for namespace 'shop'",
        ),
        # A pod that did not opt in, whatever its volume's userAnnotations say.
        ({}, "NotOptedIn", NOT_OPTED_IN),
        ({ANNOTATION_MODE: POD_CERTIFICATE}, "NotOptedIn", NOT_OPTED_IN),
        ({ANNOTATION_NAME: "web.shop.svc"}, "NotOptedIn", NOT_OPTED_IN),  # Secret mode
        ({ANNOTATION_NAME: "web.shop.svc", ANNOTATION_MODE: "secret"}, "NotOptedIn", NOT_OPTED_IN),
    ],
)
def test_requests_of_pods_the_policy_refuses_are_denied_with_the_rule(
    claim: dict[str, str], reason: str, message: str
) -> None:
    request = pcr()
    with pytest.raises(Refused) as caught:
        sign_request(request, stored(request, claim), rules=RULES)
    assert (caught.value.condition, caught.value.reason, caught.value.message) == (
        DENIED,
        reason,
        message,
    )


def test_the_names_are_the_pods_own_never_the_relayed_user_annotations() -> None:
    """Whoever writes the pod's volume writes its userAnnotations, and a node relays any."""
    request = pcr(relayed={ANNOTATION_NAME: "db.bank.svc", ANNOTATION_SANS: "api.bank.svc"})
    body = sign_request(request, stored(request), rules=RULES)
    assert body["names"] == ["web.shop.svc"]


@pytest.mark.parametrize(
    "pod",
    [None, {"metadata": {"name": "pod-req-1", "namespace": "shop", "uid": "the-next-pods"}}],
)
def test_a_request_whose_pod_is_gone_is_denied(pod: dict[str, Any] | None) -> None:
    with pytest.raises(Refused) as caught:
        sign_request(pcr(), pod, rules=RULES)
    assert (caught.value.reason, caught.value.message) == (
        "PodGone",
        "pod 'pod-req-1' of this request no longer exists",
    )


@pytest.mark.parametrize(
    ("namespace", "scope", "message"),
    [
        (
            "kube-system",
            SCOPE,
            "namespace 'kube-system' is not served: hello-mtls never serves 'kube-system' nor"
            " 'hello-mtls'",
        ),
        (
            "hello-mtls",
            SCOPE,
            "namespace 'hello-mtls' is not served: hello-mtls never serves 'kube-system' nor"
            " 'hello-mtls'",
        ),
        (
            "bank",
            Scope(own="hello-mtls", watched=frozenset({"shop", "web"})),
            "namespace 'bank' is not served: it is not in operator.watchNamespaces (shop, web)",
        ),
    ],
)
def test_requests_from_namespaces_the_install_does_not_serve_are_denied_unread(
    api: PodCertificateRequests, ca: CA, clock: Clock, namespace: str, scope: Scope, message: str
) -> None:
    s = Signer(api, ca, signer_name=SIGNER, rules=RULES, scope=scope, refresh_fraction=0.5)
    s.offer(api.add(pcr(ns=namespace)))
    (condition,) = api.requests[(namespace, "req-1")]["status"]["conditions"]
    assert (condition["type"], condition["reason"], condition["message"]) == (
        DENIED,
        "NamespaceNotServed",
        message,
    )
    assert api.events == [
        ("pod-req-1", "Warning", "PodCertificateDenied", f"NamespaceNotServed: {message}")
    ]
    assert ca.signed == 0


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            ed25519.Ed25519PrivateKey.generate(),
            "csr key type Ed25519PublicKey is not supported (use ECDSA or RSA)",
        ),
        (ec.generate_private_key(ec.SECP521R1()), "csr key curve secp521r1 is not supported"),
    ],
)
def test_keys_the_ca_does_not_sign_are_denied_with_unsupported_key_type(
    api: PodCertificateRequests, ca: CA, clock: Clock, key: Any, message: str
) -> None:
    signer(api, ca, clock).offer(api.add(pcr(key=key)))
    (condition,) = status(api)["conditions"]
    assert (condition["type"], condition["reason"]) == (DENIED, "UnsupportedKeyType")
    assert condition["message"].startswith(f"the CA refused: HTTP 400: {message}")


def test_an_issued_status_passes_the_api_servers_checks(ca: CA, clock: Clock) -> None:
    for seconds, fraction in ((3600, 2 / 3), (3600, 0.99), (86400, 2 / 3), (86400, 0.01)):
        request = pcr(max_seconds=seconds)
        answer = ca.sign(sign_request(request, stored(request), rules=RULES))
        written = issued_status(
            answer.certificate,
            max_lifetime=datetime.timedelta(seconds=seconds),
            refresh_fraction=fraction,
            now=clock.now,
        )
        assert status_problems(request, written, clock.now) == []
        leaf = x509.load_pem_x509_certificates(answer.certificate)[0]
        assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == datetime.timedelta(
            seconds=seconds
        )


def test_the_refresh_time_is_at_the_fraction(ca: CA, clock: Clock) -> None:
    request = pcr()
    answer = ca.sign(sign_request(request, stored(request), rules=RULES))
    written = issued_status(
        answer.certificate, max_lifetime=24 * HOUR, refresh_fraction=0.5, now=clock.now
    )
    leaf = x509.load_pem_x509_certificates(answer.certificate)[0]
    noon = leaf.not_valid_before_utc + 12 * HOUR
    assert written["beginRefreshAt"] == noon.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_certificate_cut_short_by_the_intermediate_fails_instead_of_a_bad_status(
    clock: Clock,
) -> None:
    short = authority.CA.create(intermediate_valid_for=datetime.timedelta(minutes=30))
    leaf = short.issue("web.shop.svc", valid_for=24 * HOUR)
    with pytest.raises(Refused) as caught:
        issued_status(leaf.chain_pem, max_lifetime=24 * HOUR, refresh_fraction=0.5, now=clock.now)
    assert caught.value.reason == "LifetimeOutOfBounds"


def test_a_pending_request_is_issued_once(
    api: PodCertificateRequests, ca: CA, clock: Clock
) -> None:
    s = signer(api, ca, clock)
    before = metrics.POD_CERTIFICATES.labels("issued")._value.get()
    stored = api.add(pcr())
    s.offer(stored)
    written = status(api)
    assert [c["type"] for c in written["conditions"]] == [ISSUED]
    assert ca.status().intermediate_sha256 in written["conditions"][0]["message"]
    assert api.status_writes == 1 and ca.signed == 1
    assert metrics.POD_CERTIFICATES.labels("issued")._value.get() == before + 1
    s.offer(api.get_request("shop", "req-1") or {}, "MODIFIED")  # our own write, watched
    s.offer(stored, "MODIFIED")  # a stale copy: the write conflicts, the fresh one is final
    assert api.status_writes == 1


def test_requests_of_other_signers_are_left_alone(
    api: PodCertificateRequests, ca: CA, clock: Clock
) -> None:
    s = signer(api, ca, clock)
    s.offer(api.add(pcr(signer="example.com/other")))
    assert api.status_writes == 0 and ca.signed == 0


def test_a_restarted_signer_answers_only_the_pending_requests(
    api: PodCertificateRequests, ca: CA, clock: Clock
) -> None:
    first = signer(api, ca, clock)
    first.offer(api.add(pcr("req-1")))
    api.add(pcr("req-2"))  # arrived while the operator was down
    issued = status(api, "req-1")
    second = signer(api, ca, clock)
    items, _ = api.list_requests(SIGNER)
    for item in items:
        second.offer(item)
    assert status(api, "req-1") == issued  # never rewritten
    assert [c["type"] for c in status(api, "req-2")["conditions"]] == [ISSUED]
    assert ca.signed == 2 and api.status_writes == 2


def test_a_denied_request_tells_the_pod(api: PodCertificateRequests, ca: CA, clock: Clock) -> None:
    s = signer(api, ca, clock)
    s.offer(
        api.add(pcr(), claim={ANNOTATION_NAME: "db.bank.svc", ANNOTATION_MODE: POD_CERTIFICATE})
    )
    (condition,) = status(api)["conditions"]
    assert (condition["type"], condition["reason"]) == (DENIED, "InvalidAnnotations")
    assert set(status(api)) == {"conditions"}
    assert api.events == [
        (
            "pod-req-1",
            "Warning",
            "PodCertificateDenied",
            "InvalidAnnotations: hello-mtls.dev/name: name 'db.bank.svc' is not under"
            " namespace 'shop'",
        )
    ]
    assert ca.signed == 0


def test_a_ca_that_is_down_is_retried_never_failed(
    api: PodCertificateRequests, ca: CA, clock: Clock
) -> None:
    s = signer(api, ca, clock)
    ca.down = True
    s.offer(api.add(pcr()))
    assert status(api) == {}
    ca.down = False
    clock.advance(0.5)
    s.tick()  # the trust bundle; the retry is not due yet
    assert status(api) == {}
    clock.advance(1)
    s.tick()
    assert [c["type"] for c in status(api)["conditions"]] == [ISSUED]


def test_a_request_deleted_meanwhile_is_dropped(
    api: PodCertificateRequests, ca: CA, clock: Clock
) -> None:
    dispatched: list[tuple[str, str]] = []
    s = Signer(
        api,
        ca,
        signer_name=SIGNER,
        rules=RULES,
        scope=SCOPE,
        refresh_fraction=2 / 3,
        dispatch=dispatched.append,
    )
    stored = api.add(pcr())
    s.offer(stored)
    s.offer(stored, "DELETED")
    s.answer(dispatched[0])
    assert ca.signed == 0


def test_a_status_the_api_server_refuses_becomes_failed(
    api: PodCertificateRequests, ca: CA, clock: Clock
) -> None:
    """If our checks and the API server's ever disagree, the pod learns why; no retry loop."""
    s = signer(api, ca, clock)
    api.clock = Clock()
    api.clock.advance(3600)  # the API server's clock is an hour ahead of the CA's and ours
    s.offer(api.add(pcr()))
    (condition,) = status(api)["conditions"]
    assert (condition["type"], condition["reason"]) == ("Failed", "StatusRefused")
    assert "notBefore is more than 5 minutes from now" in condition["message"]


def test_the_trust_bundle_follows_the_roots_through_a_rotation(
    api: PodCertificateRequests, ca: CA, clock: Clock
) -> None:
    s = signer(api, ca, clock)
    s.tick()
    name = bundle_name(SIGNER)
    assert name == "hello-mtls.dev:pod-certificate:roots"
    bundle = api.bundles[name]
    assert bundle["spec"] == {"signerName": SIGNER, "trustBundle": ca.state.bundle_pem.decode()}
    s.publish_trust_bundle()
    assert api.bundle_writes == 1  # unchanged: not written again
    ca.rotate_root("idle")
    s.publish_trust_bundle()
    roots = x509.load_pem_x509_certificates(api.bundles[name]["spec"]["trustBundle"].encode())
    assert len(roots) == 2 and api.bundle_writes == 2


def test_is_final() -> None:
    assert not is_final(pcr())
    assert is_final({"status": {"conditions": [{"type": "Denied"}]}})


def test_a_ca_clock_far_from_ours_fails_the_request(ca: CA, clock: Clock) -> None:
    request = pcr()
    answer = ca.sign(sign_request(request, stored(request), rules=RULES))
    with pytest.raises(Refused) as caught:
        issued_status(
            answer.certificate,
            max_lifetime=24 * HOUR,
            refresh_fraction=0.5,
            now=clock.now + datetime.timedelta(minutes=6),
        )
    assert caught.value.reason == "ClockSkew"


def test_run_lists_then_watches_and_answers_what_arrives(
    api: PodCertificateRequests, ca: CA, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop = threading.Event()
    api.add(pcr("req-1"))  # pending at start
    arriving = pcr("req-2")

    def watch(signer_name: str, version: str) -> Iterator[tuple[str, dict[str, Any]]]:
        assert signer_name == SIGNER and version
        yield "ADDED", api.add(arriving)
        yield "ADDED", api.add(pcr("req-3", signer="example.com/other"))
        stop.set()
        yield "ADDED", api.add(pcr("req-4"))  # after stop: left for the next operator

    monkeypatch.setattr(api, "watch_requests", watch)
    signer(api, ca, clock).run(stop)
    answered = {k[1] for k, v in api.requests.items() if is_final(v)}
    assert answered == {"req-1", "req-2"}


def test_a_request_listed_again_while_it_is_answered_is_signed_once(
    api: PodCertificateRequests, ca: CA, clock: Clock
) -> None:
    """A list (after a watch expired, or at start) taken before the status landed offers the
    request again while it is being answered: that must not make the CA sign it a second time."""
    queued: list[tuple[str, str]] = []
    s = Signer(
        api,
        ca,
        signer_name=SIGNER,
        rules=RULES,
        scope=SCOPE,
        refresh_fraction=0.5,
        clock=lambda: clock.now,
        monotonic=lambda: clock.mono,
        dispatch=queued.append,
    )
    listed = api.add(pcr())
    signed = []
    sign = ca.sign

    def sign_while_listed_again(request: Any) -> Any:
        signed.append(request)
        s.offer(copy.deepcopy(listed))  # the list thread saw it before its status
        return sign(request)

    ca.sign = sign_while_listed_again  # type: ignore[method-assign]
    s.offer(copy.deepcopy(listed))
    while queued:
        s.answer(queued.pop(0))
    assert len(signed) == 1
    assert [c["type"] for c in status(api)["conditions"]] == ["Issued"]
    assert api.status_writes == 1


def test_an_issued_request_annotates_its_pod_with_the_intermediate_that_signed(
    api: PodCertificateRequests, ca: CA, clock: Clock
) -> None:
    """The rotation gate reads it there: PCRs are deleted after 15 minutes, the pod stays."""
    s = signer(api, ca, clock)
    api.pods[("shop", "pod-req-1")] = "pod-uid-req-1"
    s.offer(api.add(pcr("req-1")))
    old = ca.status().intermediate_sha256
    assert api.annotations == {("shop", "pod-req-1"): {ANNOTATION_INTERMEDIATE: old}}
    ca.rotate_root("idle")
    ca.rotate_root("both-trusted")  # new-signing: the kubelet's next request gets the new one
    request = pcr("req-2")
    request["spec"]["podName"], request["spec"]["podUID"] = "pod-req-1", "pod-uid-req-1"
    s.offer(api.add(request))
    new = ca.status().intermediate_sha256
    assert new != old
    assert api.annotations == {("shop", "pod-req-1"): {ANNOTATION_INTERMEDIATE: new}}


def test_denied_and_failed_requests_do_not_annotate_the_pod(
    api: PodCertificateRequests, ca: CA, clock: Clock
) -> None:
    s = signer(api, ca, clock)
    api.pods[("shop", "pod-req-1")] = "pod-uid-req-1"
    api.pods[("shop", "pod-req-2")] = "pod-uid-req-2"
    s.offer(
        api.add(
            pcr("req-1"), claim={ANNOTATION_NAME: "db.bank.svc", ANNOTATION_MODE: POD_CERTIFICATE}
        )
    )
    api.clock = Clock()
    api.clock.advance(3600)  # the API server refuses the Issued status: Failed
    s.offer(api.add(pcr("req-2")))
    assert [status(api, n)["conditions"][0]["type"] for n in ("req-1", "req-2")] == [
        DENIED,
        "Failed",
    ]
    assert api.annotations == {}


def test_a_new_pod_of_the_same_name_gets_neither_the_certificate_nor_the_annotation(
    api: PodCertificateRequests, ca: CA, clock: Clock
) -> None:
    """The request's pod went; another has its name (a StatefulSet's): its annotations are not
    the ones of the pod that asked, and an annotation would lie."""
    api.pods[("shop", "pod-req-1")] = "uid-of-the-next-pod"
    signer(api, ca, clock).offer(api.add(pcr("req-1")))
    assert [(c["type"], c["reason"]) for c in status(api)["conditions"]] == [(DENIED, "PodGone")]
    assert api.annotations == {} and ca.signed == 0


def test_an_annotation_that_fails_is_retried_without_answering_again(
    api: PodCertificateRequests, ca: CA, clock: Clock
) -> None:
    s = signer(api, ca, clock)
    api.pods[("shop", "pod-req-1")] = "pod-uid-req-1"
    api.pods_down = True
    s.offer(api.add(pcr("req-1")))
    assert [c["type"] for c in status(api)["conditions"]] == [ISSUED]
    assert api.annotations == {}
    api.pods_down = False
    clock.advance(1.5)
    s.tick()
    assert api.annotations == {
        ("shop", "pod-req-1"): {ANNOTATION_INTERMEDIATE: ca.status().intermediate_sha256}
    }
    assert api.status_writes == 1 and ca.signed == 1


def test_a_pod_the_operator_may_not_annotate_is_not_tried_again(
    api: PodCertificateRequests, ca: CA, clock: Clock
) -> None:
    """PCRs are signed in every namespace, pods patched only in the watched ones."""
    s = signer(api, ca, clock)
    api.pods[("shop", "pod-req-1")] = "pod-uid-req-1"
    api.pods_forbidden.add("shop")
    s.offer(api.add(pcr("req-1")))
    api.pods_forbidden.clear()
    clock.advance(120)
    s.tick()
    assert [c["type"] for c in status(api)["conditions"]] == [ISSUED]
    assert api.annotations == {}


def volume(signer_name: str = SIGNER) -> dict[str, Any]:
    """The projected volume the wiring policy gives a pod in pod-certificate mode (in short)."""
    source = {"podCertificate": {"signerName": signer_name, "keyType": "ECDSAP256"}}
    return {"name": "hello-mtls", "projected": {"sources": [{"configMap": {}}, source]}}


OLD = "a" * 64


@pytest.mark.parametrize(
    ("phase", "annotation", "volumes", "intermediate"),
    [
        ("Running", OLD, [volume()], OLD),
        ("Running", None, [volume()], ""),  # issued by an operator before the annotation
        ("Pending", None, [volume()], None),  # waits for its first certificate, or was refused
        ("Pending", OLD, [volume()], OLD),  # has one, and starts with it (an image to pull)
        ("Succeeded", OLD, [volume()], None),
        ("Failed", OLD, [volume()], None),
        ("Running", OLD, [volume("example.com/other")], None),
        ("Running", OLD, [{"name": "data", "emptyDir": {}}], None),
        ("Running", OLD, None, None),
    ],
)
def test_which_intermediate_signed_the_certificate_a_pod_holds(
    phase: str,
    annotation: str | None,
    volumes: list[dict[str, Any]] | None,
    intermediate: str | None,
) -> None:
    annotations = {} if annotation is None else {ANNOTATION_INTERMEDIATE: annotation}
    pod = {
        "metadata": {"annotations": annotations},
        "spec": {"volumes": volumes},
        "status": {"phase": phase},
    }
    assert certificate_intermediate(pod, SIGNER) == intermediate
    assert certificate_intermediate(pod, "") is None
