"""TLS policy profiles, as every ``tls-policy.json`` and ``GET /tls-policy`` carry them.

The JSON is fixed between components: ``{"profile", "min_version", "ciphers"}``; readers ignore
unknown keys. The client picks the cipher (no server preference), as Mozilla recommends for
these profiles.
"""

from __future__ import annotations

import json

# One list for the writer (here) and the reader (the apps): Mozilla intermediate, ECDHE + AEAD only.
from mtls_context.policy import INTERMEDIATE_CIPHERS

__all__ = ["PROFILES", "render", "tls_policy"]

PROFILES: dict[str, dict[str, str]] = {
    "intermediate": {
        "profile": "intermediate",
        "min_version": "TLSv1.2",
        "ciphers": INTERMEDIATE_CIPHERS,
    },
    "modern": {"profile": "modern", "min_version": "TLSv1.3", "ciphers": ""},
}


def tls_policy(profile: str) -> dict[str, str]:
    """The policy of ``profile`` (``intermediate`` or ``modern``) as a fresh dict.

    Raises:
        ValueError: for an unknown profile.
    """
    try:
        return dict(PROFILES[profile])
    except KeyError:
        raise ValueError(
            f"TLS profile '{profile}' is unknown (use {' or '.join(PROFILES)})"
        ) from None


def render(profile: str) -> bytes:
    """``tls-policy.json`` for ``profile``: stable key order, newline-terminated."""
    return (json.dumps(tls_policy(profile), sort_keys=True, indent=2) + "\n").encode()
