"""A SPIFFE bundle checked the way a consumer in another trust domain reads it.

The schema below is written from the SPIFFE Trust Domain and Bundle specification (section 4:
``keys`` required, ``spiffe_sequence`` and ``spiffe_refresh_hint`` integers, each JWK with
``kty`` and ``use``) and RFC 7518 section 6 (the members of an EC and an RSA key), not from our
``openapi.json``, and `jsonschema` applies it. The key numbers are compared with the certificate
that `cryptography` loads from each ``x5c``.
"""

from __future__ import annotations

import base64
from typing import Any

import jsonschema
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = ["SCHEMA", "roots_of"]

_BASE64URL = {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["keys", "spiffe_sequence", "spiffe_refresh_hint"],
    "properties": {
        "keys": {"type": "array", "items": {"$ref": "#/$defs/jwk"}},
        "spiffe_sequence": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
        "spiffe_refresh_hint": {"type": "integer", "minimum": 1},
    },
    "$defs": {
        "jwk": {
            "type": "object",
            "required": ["kty", "use", "x5c"],
            "properties": {
                "use": {"const": "x509-svid"},
                "x5c": {"type": "array", "minItems": 1, "items": {"type": "string"}},
            },
            "oneOf": [
                {
                    "properties": {
                        "kty": {"const": "EC"},
                        "crv": {"enum": ["P-256", "P-384", "P-521"]},
                        "x": _BASE64URL,
                        "y": _BASE64URL,
                    },
                    "required": ["crv", "x", "y"],
                },
                {
                    "properties": {"kty": {"const": "RSA"}, "n": _BASE64URL, "e": _BASE64URL},
                    "required": ["n", "e"],
                },
            ],
        }
    },
}
_CURVES = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}


def roots_of(bundle: dict[str, Any]) -> list[x509.Certificate]:
    """The certificates of a SPIFFE bundle's JWKs, in order, once the document fits `SCHEMA`
    and every JWK's key numbers are those of its certificate (else AssertionError)."""
    jsonschema.validate(
        bundle, SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    roots = []
    for key in bundle["keys"]:
        certificate = x509.load_der_x509_certificate(base64.b64decode(key["x5c"][0], validate=True))
        public = certificate.public_key()
        if key["kty"] == "EC":
            assert isinstance(public, ec.EllipticCurvePublicKey)
            assert isinstance(public.curve, _CURVES[key["crv"]])
            size = (public.curve.key_size + 7) // 8
            point = public.public_numbers()
            assert _unpadded(key["x"]) == point.x.to_bytes(size, "big")
            assert _unpadded(key["y"]) == point.y.to_bytes(size, "big")
        else:
            assert isinstance(public, rsa.RSAPublicKey)
            numbers = public.public_numbers()
            assert int.from_bytes(_unpadded(key["n"]), "big") == numbers.n
            assert int.from_bytes(_unpadded(key["e"]), "big") == numbers.e
            assert not _unpadded(key["n"]).startswith(b"\0"), "Base64urlUInt has no leading zero"
        roots.append(certificate)
    return roots


def _unpadded(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
