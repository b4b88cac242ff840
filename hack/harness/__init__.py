"""The real processes the test tiers and the benchmarks both start, and how they wait for them.

Infrastructure, not tests: ``tests/`` and ``benchmarks/`` import it (it is on pytest's path, and
each benchmark puts ``hack/`` on its own), and it imports neither.

* `waiting`: the one way to wait (`wait_until`: poll for a condition within a bound)
* `processes`: real processes in their own process group, always stopped; a free port
* `ca_cli`: the real ``hello-mtls-ca`` command line
* `ca_service`: a real ``hello-mtls-ca serve`` on 127.0.0.1, a root holder and its signer
* `token_review_api`: the API server's TokenReview stand-in the root holder asks
* `example_servers`: the recipes of ``examples/`` as one process per stack
"""
