"""The hello-mtls example client: ``hello-mtls-client`` calls an mTLS URL in a loop.

The reloading requests session it uses is library code: `mtls_context.requests_adapter`.
"""
