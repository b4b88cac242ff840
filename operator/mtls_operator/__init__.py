"""The hello-mtls operator: annotated pods get certificates in Secrets, renewed and healed; with
a signer name set, it also answers the kubelet's PodCertificateRequests (pod-certificate mode).

Run it with ``kopf run -m mtls_operator.handlers --standalone --all-namespaces`` (the image's
``hello-mtls-operator`` command does exactly that). The modules, lowest first:

* `marks`: the names of the label and annotations it writes and of its Lease (shared with the
  ``hello-mtls`` command)
* `claims`: a pod's annotations → `Claim` (the CA's own name and duration rules)
* `screening`: what a Secret's files may hold before they are parsed (sizes, key types)
* `certs`: keys, CSRs, and `inspect` of what a Secret holds
* `tlssecret`: the Secret body from a ``POST /sign`` answer; owner references
* `decisions`: what a Secret needs (issue, refresh trust, nothing) and who gets it on a conflict
* `rotation`, `retries`: when to advance the CA's root rotation; backoff for failed attempts
* `settings`: how the reconciler behaves (renewal fraction, resync period, the claim rules)
* `inventory`: the claiming pods and the managed Secrets they claim, shared by its threads
* `ports`, `reconciler`: what it needs from outside; the level-triggered loop that ties it together
* `leadership`: which replica works, elected with a Lease
* `workqueue`: Secret keys to reconcile, each queued once, worked off by a pool of threads
* `pod_certificates`: the signer of PodCertificateRequests and its ClusterTrustBundle
* `kube`, `ca_client`: the Kubernetes API and the CA's HTTPS API
* `metrics`: the Prometheus metrics, on their own port
* `config`: the settings from ``HELLO_MTLS_*`` environment variables
* `handlers`, `cli`: the kopf handlers, a few lines each; ``hello-mtls-operator``
"""
