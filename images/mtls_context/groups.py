"""Restrict the key exchange groups of an ``ssl.SSLContext``.

Python's ``ssl`` has no groups setter before 3.15 (``set_ecdh_curve`` takes one curve only).
Below 3.15 this calls OpenSSL's ``SSL_CTX_set1_groups_list`` on the context's own ``SSL_CTX``
through ctypes, in the very libssl the ``_ssl`` module is linked against. The pointer is checked
before use: OpenSSL must report the same options for it as Python does, else nothing is written.
"""

from __future__ import annotations

import ctypes
import ssl
import sys
from functools import cache

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
    libssl = _libssl()
    pointer = _ssl_ctx_pointer(context, libssl)
    if libssl.SSL_CTX_ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, groups.encode("ascii")) != 1:
        raise ssl.SSLError(f"OpenSSL refused the group list {groups!r}")


@cache
def _libssl() -> ctypes.CDLL:
    import _ssl

    try:
        if sys.implementation.name != "cpython":
            raise TypeError(f"{sys.implementation.name} is not CPython")
        # dlsym on the extension's handle also searches the libssl it was linked against.
        lib = ctypes.CDLL(_ssl.__file__)
        ctrl, get_options = lib.SSL_CTX_ctrl, lib.SSL_CTX_get_options
    except (AttributeError, OSError, TypeError) as e:
        raise RuntimeError(
            f"cannot restrict TLS key exchange groups: this Python's ssl module exposes no "
            f"OpenSSL symbols ({e}); use Python >= 3.15 or OPENSSL_CONF with a Groups line"
        ) from None
    ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    ctrl.restype = ctypes.c_long
    get_options.argtypes = [ctypes.c_void_p]
    get_options.restype = ctypes.c_uint64
    return lib


def _ssl_ctx_pointer(context: ssl.SSLContext, libssl: ctypes.CDLL) -> int:
    # CPython's PySSLContext starts with PyObject_HEAD followed by ``SSL_CTX *ctx``.
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer or libssl.SSL_CTX_get_options(pointer) != context.options:
        raise RuntimeError(
            "cannot restrict TLS key exchange groups: unexpected ssl.SSLContext layout; "
            "use Python >= 3.15 or OPENSSL_CONF with a Groups line"
        )
    return pointer
