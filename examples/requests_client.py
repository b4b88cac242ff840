"""requests: a Session over reloading mTLS; GET ``HELLO_MTLS_URL`` and print the answer.

Run: ``python examples/requests_client.py`` (``HELLO_MTLS_CERT_DIR``, ``HELLO_MTLS_URL``).
The session trusts only ``ca.crt`` and presents ``tls.crt``; ``verify=``, ``cert=``, proxies
and plain ``http://`` are refused, certifi and ``REQUESTS_CA_BUNDLE`` never reach the context.
"""

import os

from mtls_context import options
from mtls_context.requests_adapter import session, tls_info

URL = os.environ.get("HELLO_MTLS_URL", "https://hello.default.svc:8443/")

with session(options.cert_dir()) as s:
    r = s.get(URL, timeout=10)
    print(r.text, end="")
    print(tls_info(r))  # TLSInfo(server_serial=..., client_serial=...)
