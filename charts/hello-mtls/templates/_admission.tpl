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
label of the name plus -tls. The argument: the CEL of the annotations (which hold the name). */}}
{{- define "hello-mtls.admission.secret" -}}
'hello-mtls.dev/secret' in {{ . }} && {{ . }}['hello-mtls.dev/secret'].trim() != '' ? {{ . }}['hello-mtls.dev/secret'].trim() : {{ . }}['hello-mtls.dev/name'].trim().split('.')[0] + '-tls'
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

{{/* A duration value of the chart (90m, 24h, 1h30m, 7d) as CEL seconds. */}}
{{- define "hello-mtls.admission.seconds" -}}
{{- $d := regexFind "[0-9]+d" . | trimSuffix "d" | default "0" | atoi -}}
{{- $h := regexFind "[0-9]+h" . | trimSuffix "h" | default "0" | atoi -}}
{{- $m := regexFind "[0-9]+m" . | trimSuffix "m" | default "0" | atoi -}}
{{- $s := regexFind "[0-9]+s" . | trimSuffix "s" | default "0" | atoi -}}
{{- add (mul $d 86400) (mul $h 3600) (mul $m 60) $s -}}
{{- end -}}

{{/* CEL: hello-mtls.dev/duration, trimmed ('' when absent). Reads variables.annotations. */}}
{{- define "hello-mtls.admission.durationText" -}}
'hello-mtls.dev/duration' in variables.annotations ? variables.annotations['hello-mtls.dev/duration'].trim() : ''
{{- end -}}

{{/* CEL: the digits of the d, h, m and s parts of variables.durationText without leading zeros
('' for none or zero). */}}
{{- define "hello-mtls.admission.durationDigits" -}}
[variables.durationText.find('[0-9]+d'), variables.durationText.find('[0-9]+h'),
 variables.durationText.find('[0-9]+m'), variables.durationText.find('[0-9]+s')]
.map(g, g == '' ? '' : g.substring(0, g.size() - 1).find('[1-9][0-9]*'))
{{- end -}}

{{/* CEL: the lifetime a pod asks for, in seconds: hello-mtls.dev/duration, else
variables.defaultDuration (the chart's certificates.defaultDuration). Right only for a duration
name_rules.parse_duration accepts; guard with the digits' length (14 at most) before using it. */}}
{{- define "hello-mtls.admission.durationSeconds" -}}
'hello-mtls.dev/duration' in variables.annotations
? (variables.durationDigits[0] == '' ? 0 : int(variables.durationDigits[0]) * 86400)
  + (variables.durationDigits[1] == '' ? 0 : int(variables.durationDigits[1]) * 3600)
  + (variables.durationDigits[2] == '' ? 0 : int(variables.durationDigits[2]) * 60)
  + (variables.durationDigits[3] == '' ? 0 : int(variables.durationDigits[3]))
: variables.defaultDuration
{{- end -}}

{{/* CEL: the pod-certificate lifetime the API accepts (a podCertificate volume's
maxExpirationSeconds: 1h to 91d; mtls_operator.claims.POD_CERTIFICATE_LIFETIMES). */}}
{{- define "hello-mtls.admission.podCertificateLifetimeValid" -}}
variables.durationSeconds >= 3600 && variables.durationSeconds <= 7862400
{{- end -}}

{{/* CEL: the pod's mode (mtls_operator.claims): hello-mtls.dev/mode, trimmed, else secret. The
argument: the CEL of the annotations. */}}
{{- define "hello-mtls.admission.mode" -}}
'hello-mtls.dev/mode' in {{ . }} && {{ . }}['hello-mtls.dev/mode'].trim() != '' ? {{ . }}['hello-mtls.dev/mode'].trim() : 'secret'
{{- end -}}
