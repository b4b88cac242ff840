{{/* CEL and selectors shared by the admission policies (docs/admission.md): one copy of each rule. */}}

{{/* The namespaces hello-mtls serves: never kube-system nor its own (the CA's and the operator's). */}}
{{- define "hello-mtls.servedNamespaces" -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values: [kube-system, {{ .Release.Namespace }}]
  {{- with .Values.operator.watchNamespaces }}
  - key: kubernetes.io/metadata.name
    operator: In
    values: {{ toJson . }}
  {{- end }}
{{- end -}}

{{/* CEL: the Secret of a claim (mtls_operator.claims): hello-mtls.dev/secret, else the first DNS
label of the name plus -tls. Reads variables.annotations and variables.name. */}}
{{- define "hello-mtls.admission.secret" -}}
'hello-mtls.dev/secret' in variables.annotations && variables.annotations['hello-mtls.dev/secret'].trim() != '' ? variables.annotations['hello-mtls.dev/secret'].trim() : variables.name.split('.')[0] + '-tls'
{{- end -}}

{{/* CEL: variables.secret is a Secret name (a DNS-1123 subdomain). */}}
{{- define "hello-mtls.admission.secretValid" -}}
variables.secret.size() <= 253 && variables.secret.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')
{{- end -}}

{{/* CEL: where the wiring policy mounts the Secret: hello-mtls.dev/mount-path, else the
directory the libraries read by default. */}}
{{- define "hello-mtls.admission.mountPath" -}}
'hello-mtls.dev/mount-path' in variables.annotations && variables.annotations['hello-mtls.dev/mount-path'].trim() != '' ? variables.annotations['hello-mtls.dev/mount-path'].trim() : '/var/run/hello-mtls'
{{- end -}}

{{/* CEL: variables.mountPath is an absolute path with no '..' element and no ':'. */}}
{{- define "hello-mtls.admission.mountPathValid" -}}
variables.mountPath.size() <= 1024 && variables.mountPath.matches('^/[^:]*$') && !variables.mountPath.matches('(^|/)[.][.](/|$)')
{{- end -}}
