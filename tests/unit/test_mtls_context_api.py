"""The library's public API: what ``mtls_context`` exports is what an app needs, and nothing of
its layout (as httpx's ``test_exported_members`` pins httpx's)."""

from __future__ import annotations

import importlib
import types

import mtls_context

PUBLIC = [
    "Certificate",
    "MTLSContext",
    "PeerCert",
    "ReloadingContext",
    "ReloadingServerContext",
    "Side",
    "Status",
    "allowed",
    "build_context",
    "client_context",
    "identity",
    "server_context",
    "statuses",
]


def test_all_is_the_public_api() -> None:
    assert mtls_context.__all__ == PUBLIC


def test_every_public_name_of_the_package_is_in_all() -> None:
    names = {
        name
        for name, value in vars(mtls_context).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }

    assert sorted(names) == PUBLIC


def test_the_internals_stay_importable_from_their_modules() -> None:
    for module, names in {
        "mtls_context.layout": ["CA", "CERT", "CRL", "FILES", "KEY", "POLICY", "read_version"],
        "mtls_context.tls_policy": ["DEFAULT_POLICY", "GROUPS", "PROFILES", "TLSPolicy"],
        "mtls_context.contexts": ["ALPN"],
        "mtls_context.reloading": ["DEFAULT_CHECK_INTERVAL", "DEFAULT_MAX_AGE"],
    }.items():
        loaded = importlib.import_module(module)
        assert all(hasattr(loaded, name) for name in names), module
        assert not set(names) & set(mtls_context.__all__), module
