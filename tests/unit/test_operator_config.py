"""The operator's settings from ``HELLO_MTLS_*``: the CA's own parsers, the variable named."""

from __future__ import annotations

import datetime
import ipaddress

import pytest

from mtls_operator.config import from_environment


def test_defaults() -> None:
    config = from_environment({})
    assert config.ca_url == "https://hello-mtls-ca.hello-mtls.svc:8444"
    assert config.settings.rules.extra_allowed == {}
    assert config.settings.rules.default_duration == datetime.timedelta(hours=24)


def test_the_signer_runs_only_with_a_signer_name() -> None:
    assert from_environment({}).pod_certificate_signer == ""
    assert not from_environment({}).settings.rules.pod_certificates
    config = from_environment(
        {"HELLO_MTLS_POD_CERTIFICATE_SIGNER": "hello-mtls.dev/pod-certificate"}
    )
    assert config.pod_certificate_signer == "hello-mtls.dev/pod-certificate"
    assert config.settings.rules.pod_certificates  # pods may ask for pod-certificate mode


def test_extra_allowed_is_read_as_the_ca_reads_it() -> None:
    config = from_environment({"HELLO_MTLS_EXTRA_ALLOWED": '{"demo": ["*.b.example"]}'})
    assert config.settings.rules.extra_allowed == {"demo": ("*.b.example",)}


def test_pod_certificates_refresh_at_the_renew_fraction_unless_told_otherwise() -> None:
    assert from_environment({}).pod_certificate_refresh_fraction == 0.6667
    same = from_environment({"HELLO_MTLS_RENEW_FRACTION": "0.5"})
    assert same.pod_certificate_refresh_fraction == same.settings.renew_fraction == 0.5
    own = from_environment({"HELLO_MTLS_POD_CERTIFICATE_REFRESH_FRACTION": "0.1"})
    assert (own.pod_certificate_refresh_fraction, own.settings.renew_fraction) == (0.1, 0.6667)


def test_allowed_ips_are_read_as_the_ca_reads_them() -> None:
    assert from_environment({}).settings.rules.allowed_ips == {}
    config = from_environment({"HELLO_MTLS_ALLOWED_IPS": '{"shop": ["10.1.0.0/16", "fd00::9"]}'})
    assert config.settings.rules.allowed_ips == {
        "shop": (ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("fd00::9/128"))
    }


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "EXTRA_ALLOWED",
            '{"demo": "a.example"}',
            "extra allowed names must be a JSON object of namespace to a list of names",
        ),
        ("DEFAULT_DURATION", "soon", "duration 'soon' is not like 90m, 24h, 1h30m or 30s"),
        ("RENEW_FRACTION", "1.5", "1.5 is not between 0 and 1"),
        ("POD_CERTIFICATE_REFRESH_FRACTION", "0", "0.0 is not between 0 and 1"),
        (
            "ALLOWED_IPS",
            '{"shop": ["10.1.2.3/16"]}',
            "allowed IPs of namespace 'shop': 10.1.2.3/16 has host bits set",
        ),
        (
            "POD_CERTIFICATE_SIGNER",
            "pod-certificate",
            "'pod-certificate' is not a signer name like example.com/name",
        ),
    ],
)
def test_a_bad_variable_is_named(name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        from_environment({f"HELLO_MTLS_{name}": value})
    assert str(info.value) == f"HELLO_MTLS_{name}: {message}"


def test_the_lease_lives_in_the_operators_namespace() -> None:
    assert from_environment({}).lease_namespace == "hello-mtls"
    config = from_environment({"HELLO_MTLS_LEASE_NAMESPACE": "certs"})
    assert config.lease_namespace == "certs"
