"""Annotations → Claim: the opt-in contract and the name policy, before any key is made."""

from __future__ import annotations

import datetime
import ipaddress
from typing import Any

import pytest

from mtls_contract import durations
from mtls_contract.marks import (
    ANNOTATION_DURATION,
    ANNOTATION_MODE,
    ANNOTATION_NAME,
    ANNOTATION_SANS,
    ANNOTATION_SECRET,
    POD_CERTIFICATE,
    SECRET_MODE,
)
from mtls_operator.claims import Claim, Rules, parse_claim, parse_names
from support.name_cases import CEL_WHITE_SPACE, PYTHON_WHITE_SPACE

RULES = Rules()


def claim(annotations: dict[str, str], namespace: str = "shop", **rules: Any) -> Claim:
    return parse_claim(
        annotations, namespace=namespace, service_account="web", rules=Rules(**rules)
    )


def test_name_only_gets_the_defaults() -> None:
    c = claim({ANNOTATION_NAME: "web.shop.svc"})
    assert c.names == ("web.shop.svc",)
    assert c.secret == "web-tls"
    assert c.duration == datetime.timedelta(hours=24)
    assert c.namespace == "shop"
    assert c.service_account == "web"


def test_sans_duration_and_secret_are_read() -> None:
    c = claim(
        {
            ANNOTATION_NAME: "web.shop.svc.cluster.local",
            ANNOTATION_SANS: " web.shop.svc , 10.0.0.7,web.shop.svc.cluster.local",
            ANNOTATION_DURATION: "1h30m",
            ANNOTATION_SECRET: "web-cert",
        },
        allowed_ips={"shop": [ipaddress.ip_network("10.0.0.0/24")]},
    )
    assert c.names == ("web.shop.svc.cluster.local", "web.shop.svc", "10.0.0.7")
    assert c.duration == datetime.timedelta(hours=1, minutes=30)
    assert c.secret == "web-cert"


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({ANNOTATION_NAME: ""}, "hello-mtls.dev/name: "),
        (
            {ANNOTATION_NAME: "db.other.svc"},
            "hello-mtls.dev/name: name 'db.other.svc' is not under namespace",
        ),
        ({ANNOTATION_NAME: "*.shop.svc"}, "hello-mtls.dev/name: wildcard name"),
        ({ANNOTATION_NAME: "Web.shop"}, "hello-mtls.dev/name: name 'Web.shop' must be lower case"),
        ({ANNOTATION_NAME: "10.1.2.3"}, "hello-mtls.dev/name: '10.1.2.3' is an IP address"),
        (
            {ANNOTATION_NAME: "web.shop.svc", ANNOTATION_SANS: "api.other"},
            "hello-mtls.dev/sans: name 'api.other' is not",
        ),
        (
            {ANNOTATION_NAME: "web.shop.svc", ANNOTATION_SANS: "a.shop,,b.shop"},
            "hello-mtls.dev/sans: empty name",
        ),
        (
            {ANNOTATION_NAME: "web.shop.svc", ANNOTATION_DURATION: "soon"},
            "hello-mtls.dev/duration: duration 'soon' is not",
        ),
        (
            {ANNOTATION_NAME: "web.shop.svc", ANNOTATION_DURATION: "1m"},
            "hello-mtls.dev/duration: duration 1m is below",
        ),
        (
            {ANNOTATION_NAME: "web.shop.svc", ANNOTATION_DURATION: "90d"},
            "hello-mtls.dev/duration: duration 90d is above",
        ),
        (
            {ANNOTATION_NAME: "web.shop.svc", ANNOTATION_SECRET: "Bad_Name"},
            "hello-mtls.dev/secret: 'Bad_Name' is not a valid",
        ),
        (
            {ANNOTATION_NAME: "web.shop.svc", ANNOTATION_MODE: "csi"},
            "hello-mtls.dev/mode: 'csi' is not a mode; use secret or pod-certificate",
        ),
    ],
)
def test_bad_annotations_are_refused_with_the_annotation_named(
    annotations: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        claim(annotations)
    assert str(caught.value).startswith(message)


def test_extra_allowed_names_apply_to_their_namespace_only() -> None:
    extra = {"shop": ["api.example.com", "*.internal.example.com"]}
    c = claim(
        {
            ANNOTATION_NAME: "web.shop.svc",
            ANNOTATION_SANS: "api.example.com,x.internal.example.com",
        },
        extra_allowed=extra,
    )
    assert c.names == ("web.shop.svc", "api.example.com", "x.internal.example.com")
    with pytest.raises(ValueError, match="'api.example.com' is not under namespace 'bank'"):
        claim(
            {ANNOTATION_NAME: "web.bank.svc", ANNOTATION_SANS: "api.example.com"},
            namespace="bank",
            extra_allowed=extra,
        )


def test_duration_bounds_come_from_the_rules() -> None:
    c = claim(
        {ANNOTATION_NAME: "web.shop.svc", ANNOTATION_DURATION: "3m"},
        minimum=datetime.timedelta(minutes=2),
    )
    assert c.duration == datetime.timedelta(minutes=3)
    with pytest.raises(ValueError, match="below the CA minimum of 5m"):
        claim({ANNOTATION_NAME: "web.shop.svc", ANNOTATION_DURATION: "3m"})


def test_digest_changes_with_what_goes_into_the_certificate() -> None:
    base = claim({ANNOTATION_NAME: "web.shop.svc"})
    assert base.digest == claim({ANNOTATION_NAME: "web.shop.svc"}).digest
    assert (
        base.digest
        != claim({ANNOTATION_NAME: "web.shop.svc", ANNOTATION_SANS: "api.shop.svc"}).digest
    )
    assert (
        base.digest != claim({ANNOTATION_NAME: "web.shop.svc", ANNOTATION_DURATION: "12h"}).digest
    )
    other_sa = parse_claim(
        {ANNOTATION_NAME: "web.shop.svc"}, namespace="shop", service_account="x", rules=RULES
    )
    assert base.digest != other_sa.digest


def test_sign_request_is_the_ca_api_body() -> None:
    c = claim({ANNOTATION_NAME: "web.shop.svc", ANNOTATION_DURATION: "90m"})
    assert c.sign_request(b"CSR") == {
        "csr": "CSR",
        "names": ["web.shop.svc"],
        "duration": "1h30m",
        "namespace": "shop",
        "service_account": "web",
    }


def test_internet_names_and_unallowed_ips_are_refused_like_the_ca_does() -> None:
    # Issue 13: `shop` is a TLD, so `web.shop` is an internet name; IPs need an admin's network.
    with pytest.raises(ValueError) as internet:
        claim({ANNOTATION_NAME: "web.shop"})
    assert str(internet.value) == (
        "hello-mtls.dev/name: name 'web.shop' is an internet name (public suffix 'shop'); "
        "a namespace cannot claim it"
    )
    allowed = {"shop": [ipaddress.ip_network("10.1.0.0/16")]}
    assert (
        claim(
            {ANNOTATION_NAME: "web.shop.svc", ANNOTATION_SANS: "10.1.2.3"}, allowed_ips=allowed
        ).names[1]
        == "10.1.2.3"
    )
    for address in ("10.96.0.1", "127.0.0.1", "169.254.169.254"):
        with pytest.raises(ValueError) as refused:
            claim({ANNOTATION_NAME: "web.shop.svc", ANNOTATION_SANS: address}, allowed_ips=allowed)
        assert str(refused.value) == (
            f"hello-mtls.dev/sans: IP address '{address}' is not allowed for namespace 'shop'"
        )
    with pytest.raises(ValueError, match="'10.1.2.3' is not allowed for namespace 'bank'"):
        claim(
            {ANNOTATION_NAME: "web.bank.svc", ANNOTATION_SANS: "10.1.2.3"},
            namespace="bank",
            allowed_ips=allowed,
        )


def test_mode_is_secret_unless_pod_certificate_is_asked_for() -> None:
    assert claim({ANNOTATION_NAME: "web.shop.svc"}).mode == SECRET_MODE
    assert claim({ANNOTATION_NAME: "web.shop.svc", ANNOTATION_MODE: " secret "}).mode == SECRET_MODE
    c = claim(
        {ANNOTATION_NAME: "web.shop.svc", ANNOTATION_MODE: "pod-certificate"}, pod_certificates=True
    )
    assert c.mode == POD_CERTIFICATE
    assert (
        c.digest == claim({ANNOTATION_NAME: "web.shop.svc"}).digest
    )  # the certificate is the same


@pytest.mark.parametrize("space", PYTHON_WHITE_SPACE, ids=lambda c: f"U+{ord(c):04X}")
def test_annotations_are_trimmed_of_what_the_admission_policy_trims(space: str) -> None:
    """The policy's CEL trim() strips the Unicode White_Space property; str.strip() also strips
    \\x1c-\\x1f, which would make the operator accept what the policy refuses."""
    padded = {
        ANNOTATION_NAME: f"{space}web.shop.svc{space}",
        ANNOTATION_SANS: f"{space}api.shop.svc{space},{space}db.shop.svc",
        ANNOTATION_DURATION: f"{space}1h{space}",
        ANNOTATION_SECRET: f"{space}web-cert{space}",
        ANNOTATION_MODE: f"{space}secret{space}",
    }
    if space in CEL_WHITE_SPACE:
        c = claim(padded)
        assert c.names == ("web.shop.svc", "api.shop.svc", "db.shop.svc")
        assert (c.duration, c.secret, c.mode) == (datetime.timedelta(hours=1), "web-cert", "secret")
        return
    for key in padded:
        with pytest.raises(ValueError) as caught:
            claim({ANNOTATION_NAME: "web.shop.svc", key: padded[key]})
        assert str(caught.value).startswith(f"{key}: "), key


def test_pod_certificate_mode_needs_the_signer() -> None:
    with pytest.raises(ValueError) as caught:
        claim({ANNOTATION_NAME: "web.shop.svc", ANNOTATION_MODE: "pod-certificate"})
    assert str(caught.value) == (
        "hello-mtls.dev/mode: pod-certificate is not enabled in this installation"
        " (chart value podCertificates.enabled); use secret"
    )


@pytest.mark.parametrize(
    ("duration", "maximum", "accepted"),
    [
        ("1h", "30d", True),
        ("59m59s", "30d", False),
        ("91d", "100d", True),
        ("91d1s", "100d", False),
    ],
)
def test_a_pod_certificate_lives_as_long_as_the_api_allows(
    duration: str, maximum: str, accepted: bool
) -> None:
    annotations = {
        ANNOTATION_NAME: "web.shop.svc",
        ANNOTATION_MODE: "pod-certificate",
        ANNOTATION_DURATION: duration,
    }

    def parse() -> Claim:
        return claim(annotations, pod_certificates=True, maximum=durations.parse_duration(maximum))

    if accepted:
        assert parse().duration == durations.parse_duration(duration)
        return
    with pytest.raises(ValueError) as caught:
        parse()
    assert str(caught.value) == (
        f"hello-mtls.dev/duration: duration {duration} is outside the 1h to 91d a pod"
        " certificate may live"
    )


def test_the_default_duration_must_suit_a_pod_certificate_too() -> None:
    with pytest.raises(ValueError, match="duration 30m is outside the 1h to 91d"):
        claim(
            {ANNOTATION_NAME: "web.shop.svc", ANNOTATION_MODE: "pod-certificate"},
            pod_certificates=True,
            default_duration=datetime.timedelta(minutes=30),
        )


def test_parse_names_is_the_name_part_of_parse_claim() -> None:
    """The signer reads a PodCertificateRequest's user annotations with the same rules."""
    rules = Rules()
    assert parse_names(
        {ANNOTATION_NAME: "web.shop.svc", ANNOTATION_SANS: "api.shop.svc,web.shop.svc"},
        namespace="shop",
        rules=rules,
    ) == ("web.shop.svc", "api.shop.svc")
    with pytest.raises(ValueError) as caught:
        parse_names(
            {ANNOTATION_NAME: "web.shop.svc", ANNOTATION_SANS: "api.bank"},
            namespace="shop",
            rules=rules,
        )
    assert str(caught.value) == "hello-mtls.dev/sans: name 'api.bank' is not under namespace 'shop'"
