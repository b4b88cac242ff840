"""requests: a Session over reloading mTLS; GET ``HELLO_MTLS_URL`` and print the answer.

Run: ``python examples/requests_client.py`` (``HELLO_MTLS_CERT_DIR``, ``HELLO_MTLS_URL``).
The session trusts only ``ca.crt`` and presents ``tls.crt``; ``verify=``, ``cert=``, proxies
and plain ``http://`` are refused, certifi and ``REQUESTS_CA_BUNDLE`` never reach the context.
"""

from mtls_context import options
from mtls_context.requests_adapter import session, tls_info

URL = options.url()

with session(options.cert_dir()) as s:
    r = s.get(URL, timeout=10)
    print(r.text, end="")
    print(tls_info(r))  # TLSInfo(server_serial=..., client_serial=...)
