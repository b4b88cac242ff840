"""Property tests (hypothesis) of the two places names come in: a pod's annotations (the
operator's parser) and the names of ``POST /sign`` (the CA). For any input the answer is either a
certificate whose every name passes the name rules, or a refusal with a message."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mtls_ca.authority import CA
from mtls_ca.http_api import create_app
from mtls_ca.state import DirectoryStore, State
from mtls_ca.state_cache import StateCache
from mtls_contract import durations, name_rules
from mtls_contract.marks import (
    ANNOTATION_DURATION,
    ANNOTATION_NAME,
    ANNOTATION_SANS,
    ANNOTATION_SECRET,
)
from mtls_operator.claims import Rules, parse_claim
from support.name_cases import CEL_WHITE_SPACE, PYTHON_WHITE_SPACE

NAMESPACES = ["demo", "team-a", "shop", "com", "io", "uk", "local", "corp"]
EXTRA = {"demo": ("api.example.com", "*.internal.example.com")}
ALLOWED_IPS = name_rules.parse_allowed_ips('{"shop": ["10.1.0.0/16", "127.0.0.1/32", "::/0"]}')
PROVISIONER = {
    "subject": ((("commonName", "operator"),),),
    "subjectAltName": (("URI", "spiffe://cluster.local/hello-mtls/provisioner/operator"),),
}

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)


def _granted(namespace: str) -> st.SearchStrategy[str]:
    """The forms the rules grant ``namespace`` (refused where the result is an internet name or
    under a reserved top-level domain)."""
    return st.builds(
        lambda x, tail: f"{x}.{namespace}{tail}",
        _label,
        st.sampled_from(["", ".svc", ".svc.cluster.local", ".pod.cluster.local"]),
    )


def _names(namespace: str) -> st.SearchStrategy[str]:
    """Names a pod of ``namespace`` might ask for: granted forms, near misses, internet names,
    addresses and junk."""
    granted = _granted(namespace)
    near_misses = st.builds(
        lambda x, ns, tail: f"{x}.{ns}{tail}",
        _label,
        st.sampled_from([*NAMESPACES, "co.uk", "github.io", "svc"]),
        st.sampled_from(["", ".svc", ".pod", ".evil.com", ".svc.cluster.local.evil.com"]),
    )
    others = st.one_of(
        near_misses,
        st.sampled_from(
            ["google.com", "github.io", "co.uk", "api.example.com", "x.internal.example.com"]
        ),
        st.ip_addresses().map(str),
        st.sampled_from(
            ["127.0.0.1", "169.254.169.254", "10.96.0.1", "10.1.2.3", "::1", "fe80::1"]
        ),
        st.text(max_size=40),
        st.from_regex(r"[a-zA-Z0-9.*_-]{1,30}", fullmatch=True),
    )
    return st.one_of(granted, granted, others)


def _passes(names: list[str], namespace: str) -> None:
    name_rules.check_names(
        names,
        namespace=namespace,
        extra_allowed=EXTRA.get(namespace, ()),
        allowed_ips=ALLOWED_IPS.get(namespace, ()),
    )


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_annotations_give_a_rule_abiding_claim_or_a_message(data: st.DataObject) -> None:
    namespace = data.draw(st.sampled_from(NAMESPACES))
    name = data.draw(_granted(namespace) if _often(data) else _names(namespace))
    if not _often(data):
        padding = st.text(st.sampled_from(PYTHON_WHITE_SPACE), min_size=1, max_size=2)
        name = data.draw(padding) + name + data.draw(padding)
    sans = data.draw(st.lists(_names(namespace), max_size=2))
    separator = data.draw(st.sampled_from([",", ", ", " ,"]))
    duration = None if _often(data) else data.draw(st.sampled_from(["1h", "1m", "90d", "s"]))
    secret = None if _often(data) else data.draw(st.one_of(_label, st.text(max_size=20)))
    annotations = {ANNOTATION_NAME: name, ANNOTATION_SANS: separator.join(sans)}
    if duration is not None:
        annotations[ANNOTATION_DURATION] = duration
    if secret is not None:
        annotations[ANNOTATION_SECRET] = secret
    rules = Rules(extra_allowed=EXTRA, allowed_ips=ALLOWED_IPS)
    try:
        claim = parse_claim(annotations, namespace=namespace, service_account="web", rules=rules)
    except ValueError as refused:
        event("refused")
        annotation, _, message = str(refused).partition(": ")
        assert (
            annotation in (ANNOTATION_NAME, ANNOTATION_SANS, ANNOTATION_DURATION, ANNOTATION_SECRET)
            and message.strip()
        ), str(refused)
        return
    event("claimed")
    assert claim.names[0] == name.strip(CEL_WHITE_SPACE)
    assert not name_rules.is_ip_address(claim.names[0])
    _passes(list(claim.names), namespace)
    durations.check_duration(claim.duration, minimum=rules.minimum, maximum=rules.maximum)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    store = DirectoryStore(Path(tmp_path_factory.mktemp("properties")))
    store.create(State(generations=(CA.create(),)))
    app = create_app(StateCache(store), extra_allowed=EXTRA, allowed_ips=ALLOWED_IPS)
    return app.test_client()


@pytest.fixture(scope="module")
def csr() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    return request.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_sign_answers_a_rule_abiding_certificate_or_a_json_message(
    ca: FlaskClient, csr: str, data: st.DataObject
) -> None:
    # Mostly well-shaped requests, so that the names reach the name rules.
    namespace = data.draw(
        st.sampled_from(NAMESPACES) if _often(data) else st.one_of(st.none(), st.text())
    )
    names: list[Any] = data.draw(
        st.lists(_names(namespace or "demo"), min_size=1, max_size=4)
        if _often(data)
        else st.lists(st.integers(), max_size=2)
    )
    extra_allowed = None if _often(data) else data.draw(st.lists(_names("demo"), max_size=2))
    body: dict[str, Any] = {"csr": csr, "names": names}
    if namespace is not None:
        body["namespace"] = namespace
    if extra_allowed is not None:
        body["extra_allowed"] = extra_allowed  # never trusted: the CA's own configuration rules
    answer = ca.post("/sign", json=body, environ_base={"gunicorn.socket": _Peer()})
    event(f"HTTP {answer.status_code}")
    if answer.status_code != 200:
        assert 400 <= answer.status_code < 500, answer.json
        assert isinstance(answer.json, dict) and set(answer.json) == {"error"}
        assert isinstance(answer.json["error"], str) and answer.json["error"]
        return
    assert namespace is not None and extra_allowed is None and answer.json is not None
    leaf = x509.load_pem_x509_certificates(answer.json["certificate"].encode())[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    issued: list[str] = sans.get_values_for_type(x509.DNSName)
    issued += [str(a) for a in sans.get_values_for_type(x509.IPAddress)]
    assert set(issued) == {_canonical(n) for n in names}
    _passes(issued, namespace)
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"spiffe://cluster.local/ns/{namespace}/sa/default"
    ]


class _Peer:
    """Stands in for ``environ["gunicorn.socket"]``: the operator's verified client certificate."""

    def getpeercert(self) -> dict[str, Any]:
        return PROVISIONER


def _often(data: st.DataObject) -> bool:
    return data.draw(st.sampled_from([True] * 9 + [False]))


def _canonical(name: str) -> str:
    return str(ipaddress.ip_address(name)) if name_rules.is_ip_address(name) else name
