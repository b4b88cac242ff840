"""The few DER and PEM readers the standard-library-only modules need (RFC 5280 structures).

OpenSSL checks every signature when it uses a certificate or CRL; these readers only find
fields (a CRL's dates, a certificate's issuer and subject alternative names) in what it accepted.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["children", "content", "extent", "pem_blocks"]

_PEM = re.compile(rb"-----BEGIN (X509 CRL|CERTIFICATE)-----(.+?)-----END \1-----", re.DOTALL)


def pem_blocks(pem: bytes) -> list[tuple[bytes, bytes]]:
    """The ``(kind, DER)`` of each ``CERTIFICATE`` and ``X509 CRL`` block, in order.

    Raises:
        ValueError: if a block's base64 does not decode.
    """
    found = []
    for match in _PEM.finditer(pem):
        try:
            found.append((match.group(1), base64.b64decode(match.group(2), validate=False)))
        except binascii.Error as e:
            raise ValueError(f"bad base64: {e}") from None
    return found


def content(tlv: bytes, tag: int) -> bytes:
    """The content of the TLV ``tlv``, which must have tag ``tag``.

    Raises:
        ValueError: if the tag differs or the DER is truncated.
    """
    if not tlv or tlv[0] != tag:
        raise ValueError(f"expected DER tag {tag:#x}")
    start, end = extent(tlv, 0)
    return tlv[start:end]


def children(content: bytes) -> list[bytes]:
    """The TLVs (headers included) one after the other in ``content``."""
    found, pos = [], 0
    while pos < len(content):
        start, end = extent(content, pos)
        found.append(content[pos:end])
        pos = end
    return found


def extent(data: bytes, pos: int) -> tuple[int, int]:
    """(start, end) of the content of the TLV at ``pos``.

    Raises:
        ValueError: if the length is malformed or runs past the data.
    """
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    length, pos = data[pos + 1], pos + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad DER length")
        length, pos = int.from_bytes(data[pos : pos + count], "big"), pos + count
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return pos, pos + length
