"""The hello-mtls operator: annotated pods get certificates in Secrets, renewed and healed; with
a signer name set, it also answers the kubelet's PodCertificateRequests (pod-certificate mode).

Run it with ``kopf run -m mtls_operator.handlers --standalone --all-namespaces`` (the image's
``hello-mtls-operator`` command does exactly that). The modules, lowest first; a module imports
only modules above it (the import contract "The operator's modules form layers" checks it):

* `claims`: a pod's annotations → `Claim` (the CA's own name and duration rules, from
  `mtls_contract`, as are the names of the label and annotations it writes)
* `screening`: what a Secret's files may hold before they are parsed (sizes, key types)
* `federation`, `scope`, `retries`: federated trust domains' bundles; the namespaces served;
  backoff for failed attempts
* `certs`: keys, CSRs, and `inspect` of what a Secret holds
* `ca_view`: what the operator knows of the CA (status, roots, CRLs, federated bundles)
* `tlssecret`: the Secret body from a ``POST /sign`` answer; owner references; the TLS-policy
  ConfigMap
* `decisions`, `rotation`, `pod_certificates`: what a Secret needs (issue, refresh trust,
  nothing) and who gets it on a conflict; when to advance the CA's root rotation; the rules of
  the PodCertificateRequest signer
* `settings`: how the reconciler behaves (renewal fraction, resync period, the claim rules)
* `inventory`: the claiming pods and the managed Secrets they claim, shared by its threads
* `ports`: what the reconciler and the signer need from outside
* `leadership`, `workqueue`: which replica works, elected with a Lease; Secret keys to
  reconcile, each queued once, worked off by a pool of threads
* `metrics`: the Prometheus metrics, on their own port
* `bundle_fetcher`: fetches the federated trust domains' bundles
* `policy_config_maps`, `rotation_driver`: the TLS-policy ConfigMaps of pod-certificate pods;
  advancing the CA's root rotation
* `reconciler`, `pod_certificate_signer`: the level-triggered loop that keeps Secrets right; the
  signer of PodCertificateRequests and its ClusterTrustBundle
* `kube`, `ca_client`: the Kubernetes API and the CA's HTTPS API
* `config`: the settings from ``HELLO_MTLS_*`` environment variables
* `handlers`, `cli`: the kopf handlers, a few lines each; ``hello-mtls-operator``
"""
