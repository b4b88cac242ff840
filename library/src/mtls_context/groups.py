"""Restrict the key exchange groups of an ``ssl.SSLContext``.

Python's ``ssl`` has no groups setter before 3.15 (``set_ecdh_curve`` takes one curve only).
Below 3.15 this calls OpenSSL's ``SSL_CTX_set1_groups_list`` on the context's own ``SSL_CTX``
through ctypes (`mtls_context.openssl`), in the very libssl the ``_ssl`` module is linked
against; nothing is written through a pointer OpenSSL does not confirm.
"""

from __future__ import annotations

import ssl

from mtls_context import openssl

__all__ = ["set_groups"]

_SSL_CTRL_SET_GROUPS_LIST = 92  # SSL_CTX_set1_groups_list is a macro over SSL_CTX_ctrl


def set_groups(context: ssl.SSLContext, groups: str) -> None:
    """Allow only ``groups`` (an OpenSSL list such as ``"X25519:P-256:P-384"``) on ``context``.

    Applies to TLS 1.2 and 1.3, server and client side. Call it while the context is being built.

    Raises:
        ssl.SSLError: if OpenSSL refuses the list (an unknown group name).
        RuntimeError: if neither Python nor the linked OpenSSL offers a way to set groups.
    """
    setter = getattr(context, "set_groups", None)  # Python >= 3.15
    if setter is not None:
        setter(groups)
        return
    try:
        pointer = openssl.ssl_ctx(context)
    except RuntimeError as e:
        raise RuntimeError(
            f"cannot restrict TLS key exchange groups: {e}; "
            "use Python >= 3.15 or OPENSSL_CONF with a Groups line"
        ) from None
    ctrl = openssl.libssl().SSL_CTX_ctrl
    if ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, groups.encode("ascii")) != 1:
        raise ssl.SSLError(f"OpenSSL refused the group list {groups!r}")
