"""The OpenSSL that Python's ``ssl`` module runs on, for the few calls ``ssl`` does not offer.

Symbols are looked up through the ``_ssl`` extension's own handle, which also searches the
libssl and libcrypto it was linked against, so these calls reach the very library that holds
the contexts. A context's ``SSL_CTX`` pointer is checked before use: OpenSSL must report the
same options for it as Python does.
"""

from __future__ import annotations

import ctypes
import ssl
import sys
from functools import cache

__all__ = ["certificate_der", "libssl", "ssl_ctx"]


@cache
def libssl() -> ctypes.CDLL:
    """The OpenSSL library of the ``_ssl`` module, with the argument types used here declared.

    Raises:
        RuntimeError: if this Python's ``ssl`` module exposes no OpenSSL symbols.
    """
    import _ssl

    try:
        if sys.implementation.name != "cpython":
            raise TypeError(f"{sys.implementation.name} is not CPython")
        lib = ctypes.CDLL(_ssl.__file__)
        signatures: dict[str, tuple[list[object], object]] = {
            "SSL_CTX_ctrl": (
                [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p],
                ctypes.c_long,
            ),
            "SSL_CTX_get_options": ([ctypes.c_void_p], ctypes.c_uint64),
            "SSL_CTX_get_verify_mode": ([ctypes.c_void_p], ctypes.c_int),
            "SSL_CTX_set_verify": ([ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p], None),
            "X509_STORE_CTX_get_error": ([ctypes.c_void_p], ctypes.c_int),
            "X509_STORE_CTX_set_error": ([ctypes.c_void_p, ctypes.c_int], None),
            "X509_STORE_CTX_get_error_depth": ([ctypes.c_void_p], ctypes.c_int),
            "X509_STORE_CTX_get0_chain": ([ctypes.c_void_p], ctypes.c_void_p),
            "OPENSSL_sk_num": ([ctypes.c_void_p], ctypes.c_int),
            "OPENSSL_sk_value": ([ctypes.c_void_p, ctypes.c_int], ctypes.c_void_p),
            "i2d_X509": ([ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)], ctypes.c_int),
        }
        for name, (argtypes, restype) in signatures.items():
            function = getattr(lib, name)
            function.argtypes = argtypes
            function.restype = restype
    except (AttributeError, OSError, TypeError) as e:
        raise RuntimeError(f"this Python's ssl module exposes no OpenSSL symbols ({e})") from None
    return lib


def ssl_ctx(context: ssl.SSLContext) -> int:
    """The ``SSL_CTX *`` of ``context``.

    Raises:
        RuntimeError: if ``context`` is not laid out as expected, or OpenSSL is not reachable.
    """
    lib = libssl()
    # CPython's PySSLContext starts with PyObject_HEAD followed by ``SSL_CTX *ctx``.
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer or lib.SSL_CTX_get_options(pointer) != context.options:
        raise RuntimeError("unexpected ssl.SSLContext layout")
    return pointer


def certificate_der(x509: int) -> bytes:
    """The DER of an ``X509 *``."""
    lib = libssl()
    size = lib.i2d_X509(x509, None)
    if size <= 0:
        raise ValueError("OpenSSL cannot encode a certificate of the chain")
    buffer = ctypes.create_string_buffer(size)
    cursor = ctypes.c_void_p(ctypes.addressof(buffer))
    lib.i2d_X509(x509, ctypes.byref(cursor))
    return buffer.raw
