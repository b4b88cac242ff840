"""Server and client TLS contexts built from a certificate directory (stdlib ``ssl`` only)."""

from mtls_context.layout import CA, CERT, FILES, KEY, POLICY, read_version, write_version

__all__ = ["CA", "CERT", "FILES", "KEY", "POLICY", "read_version", "write_version"]
