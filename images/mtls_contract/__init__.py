"""What the CA, the operator and the ``hello-mtls`` command agree on: names, never code that acts.

The CA (`mtls_ca`) applies these rules when it signs, the operator (`mtls_operator`) before it
asks, the command (`mtls_cli`) when it reads what both wrote. Only the standard library and
``publicsuffixlist`` here (an import contract checks it), so each of them may import it:

* `name_rules`: what the CA agrees to sign (names, durations, SPIFFE IDs), pure
* `marks`: the ``hello-mtls.dev/*`` label and annotations the operator writes, and its Lease
* `phases`: the root rotation's phases, one enum
* `ca_api`: the ``POST /sign`` request and answer, the ``GET /status`` fields clients act on
"""
