{{/* Names shared by the templates. The in-cluster names are part of the contract (docs/design.md). */}}

{{/* The prefix of the cluster-scoped objects' names (ClusterRoles and their bindings, admission
policies and their bindings), Helm's usual fullname: the release name if it holds the chart's
name (the release hello-mtls: hello-mtls), else <release>-hello-mtls. Two releases in one cluster
need different ones (docs/federation.md, "Two installs in one cluster"). */}}
{{- define "hello-mtls.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}
{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end -}}
{{- end -}}

{{- define "hello-mtls.labels" -}}
app.kubernetes.io/part-of: hello-mtls
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "hello-mtls.image" -}}
{{ index .root.Values.images .name }}:{{ .root.Values.images.tag }}
{{- end -}}

{{/* The CA's signing port: POST /sign and POST /rotate-root are served there only. */}}
{{- define "hello-mtls.caSignURL" -}}
https://hello-mtls-ca.{{ .Release.Namespace }}.svc:8444
{{- end -}}

{{- define "hello-mtls.caRootURL" -}}
https://hello-mtls-ca-root.{{ .Release.Namespace }}.svc:8444
{{- end -}}

{{/* Whether CA signer pods serve the Service hello-mtls-ca (ca.signers.replicas > 0). */}}
{{- define "hello-mtls.caSigners" -}}
{{- if gt (int .Values.ca.signers.replicas) 0 }}true{{ end -}}
{{- end -}}

{{- define "hello-mtls.operatorSA" -}}
system:serviceaccount:{{ .Release.Namespace }}:hello-mtls-operator
{{- end -}}

{{/* The example apps' --metrics-port (examples.metricsPort): pod annotations, argument, port. */}}
{{- define "hello-mtls.examplesMetricsAnnotations" -}}
{{- if .Values.examples.metricsPort -}}
prometheus.io/scrape: "true"
prometheus.io/port: "{{ .Values.examples.metricsPort }}"
{{- end }}
{{- end -}}

{{- define "hello-mtls.examplesMetricsArgs" -}}
{{- if .Values.examples.metricsPort -}}
- --metrics-port={{ .Values.examples.metricsPort }}
{{- end }}
{{- end -}}

{{- define "hello-mtls.examplesMetricsPorts" -}}
{{- if .Values.examples.metricsPort -}}
- name: metrics
  containerPort: {{ .Values.examples.metricsPort }}
{{- end }}
{{- end -}}

{{/* Restricted pod security: non-root, no privilege escalation, no capabilities. */}}
{{- define "hello-mtls.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "hello-mtls.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* The metrics ports the stale-certificate watch reads (its NetworkPolicy's egress, its
--metrics-ports): the operator's, the example apps', staleWatch.metricsPorts; comma-separated. */}}
{{- define "hello-mtls.staleWatchPorts" -}}
{{- $ports := list (int .Values.metrics.port) }}
{{- range .Values.staleWatch.metricsPorts }}
{{- $ports = append $ports (int .) }}
{{- end }}
{{- if .Values.examples.metricsPort }}
{{- $ports = append $ports (int .Values.examples.metricsPort) }}
{{- end }}
{{- $ports | uniq | sortAlpha | join "," }}
{{- end -}}
