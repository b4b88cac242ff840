"""TLS profiles render the JSON every component reads."""

from __future__ import annotations

import json
import ssl

import pytest

from mtls_ca.tls_profiles import render, tls_policy

MOZILLA_INTERMEDIATE_WITHOUT_DHE = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)


def test_intermediate_profile() -> None:
    assert tls_policy("intermediate") == {
        "profile": "intermediate",
        "min_version": "TLSv1.2",
        "ciphers": MOZILLA_INTERMEDIATE_WITHOUT_DHE,
    }


def test_modern_profile() -> None:
    assert tls_policy("modern") == {"profile": "modern", "min_version": "TLSv1.3", "ciphers": ""}


def test_cipher_string_is_understood_by_openssl() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers(tls_policy("intermediate")["ciphers"])
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == set(MOZILLA_INTERMEDIATE_WITHOUT_DHE.split(":"))


def test_render_is_json_and_returns_copies() -> None:
    assert json.loads(render("modern")) == tls_policy("modern")
    tls_policy("modern")["min_version"] = "TLSv1"
    assert tls_policy("modern")["min_version"] == "TLSv1.3"


def test_unknown_profile() -> None:
    with pytest.raises(ValueError) as info:
        tls_policy("old")
    assert str(info.value) == "TLS profile 'old' is unknown (use intermediate or modern)"
