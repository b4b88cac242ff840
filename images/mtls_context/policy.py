"""The TLS policy the CA distributes in ``tls-policy.json``, and how it is applied to a context.

The JSON is fixed between the CA and the apps::

    {"profile": "intermediate" | "modern", "min_version": "TLSv1.2" | "TLSv1.3",
     "ciphers": "<OpenSSL cipher string for TLS <= 1.2; '' under modern>"}

Readers ignore unknown keys, so the CA can add fields without breaking older apps.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass

__all__ = ["DEFAULT_POLICY", "INTERMEDIATE_CIPHERS", "TLSPolicy"]

# Mozilla Server Side TLS "intermediate" (guidelines 6.0), which already dropped the DHE suites.
INTERMEDIATE_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)

_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
_PROFILES = ("intermediate", "modern")


@dataclass(frozen=True)
class TLSPolicy:
    """Which TLS versions and (TLS <= 1.2) cipher suites a context accepts."""

    profile: str
    min_version: ssl.TLSVersion
    ciphers: str

    @classmethod
    def from_json(cls, data: bytes) -> TLSPolicy:
        """Parse ``tls-policy.json``.

        Raises:
            ValueError: if the JSON is malformed, names an unknown profile or version, or is
                inconsistent (``modern`` below TLS 1.3, ``intermediate`` without ciphers).
        """
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"TLS policy is not valid JSON: {e}") from None
        if not isinstance(raw, dict):
            raise ValueError("TLS policy must be a JSON object")
        profile = raw.get("profile", "intermediate")
        if profile not in _PROFILES:
            raise ValueError(f"unknown TLS profile {profile!r} (expected one of {_PROFILES})")
        version_name = raw.get("min_version", "TLSv1.3" if profile == "modern" else "TLSv1.2")
        if version_name not in _VERSIONS:
            raise ValueError(f"unsupported min_version {version_name!r} (expected TLSv1.2 or 1.3)")
        ciphers = raw.get("ciphers", INTERMEDIATE_CIPHERS if profile == "intermediate" else "")
        if not isinstance(ciphers, str):
            raise ValueError("TLS policy ciphers must be a string")
        policy = cls(profile, _VERSIONS[version_name], ciphers)
        if profile == "modern" and policy.min_version is not ssl.TLSVersion.TLSv1_3:
            raise ValueError("the modern TLS profile needs min_version TLSv1.3")
        if policy.min_version is ssl.TLSVersion.TLSv1_2 and not ciphers:
            raise ValueError("a TLS policy that allows TLS 1.2 needs a cipher list")
        return policy

    def apply(self, context: ssl.SSLContext) -> None:
        """Set versions, ciphers and options on a context that is still being built.

        Never call this on a context that is already in use: build a new one instead.

        Raises:
            ssl.SSLError: if OpenSSL knows none of the ciphers.
        """
        context.minimum_version = self.min_version
        if self.min_version is ssl.TLSVersion.TLSv1_2:
            context.set_ciphers(self.ciphers)
        context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_TICKET
        # The client picks the cipher (Mozilla's guidelines; every allowed suite is strong).
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE


DEFAULT_POLICY = TLSPolicy("intermediate", ssl.TLSVersion.TLSv1_2, INTERMEDIATE_CIPHERS)
