{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "entourage.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: "<release>-<chart>", or just the release name when it already contains the chart name.
*/}}
{{- define "entourage.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
"name-version" for the helm.sh/chart label.
*/}}
{{- define "entourage.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Standard labels on every object.
*/}}
{{- define "entourage.labels" -}}
helm.sh/chart: {{ include "entourage.chart" . }}
{{ include "entourage.selectorLabels" . }}
{{- /* From the chart, never from image.tag: a digest or "@" in a tag is not a valid label value. */}}
app.kubernetes.io/version: {{ .Chart.AppVersion | replace "+" "_" | trunc 63 | quote }}
app.kubernetes.io/component: admission-webhook
app.kubernetes.io/part-of: entourage
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: stable across upgrades (a Deployment's selector is immutable).
*/}}
{{- define "entourage.selectorLabels" -}}
app.kubernetes.io/name: {{ include "entourage.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "entourage.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "entourage.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "entourage.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Object names.
*/}}
{{- define "entourage.serviceName" -}}
{{- include "entourage.fullname" . }}
{{- end }}

{{- define "entourage.webhookConfigName" -}}
{{- include "entourage.fullname" . }}
{{- end }}

{{/*
"true" when the ValidatingWebhookConfiguration is installed: config.validation is not off (YAML
1.1 reads an unquoted off as false, so both spellings count).
*/}}
{{- define "entourage.validating" -}}
{{- if not (has (toString .Values.config.validation) (list "off" "false")) }}true{{ end }}
{{- end }}

{{/*
The namespaceSelector both webhook configurations share: the validating webhook judges exactly
the namespaces whose pods the mutating one injects.
*/}}
{{- define "entourage.namespaceSelector" -}}
matchExpressions:
  {{- if eq .Values.injection.mode "opt-in" }}
  # opt-in: only namespaces labelled entourage.dev/injection=enabled.
  - key: entourage.dev/injection
    operator: In
    values: ["enabled"]
  {{- else }}
  # cluster-wide: every namespace not labelled entourage.dev/injection=disabled.
  - key: entourage.dev/injection
    operator: NotIn
    values: ["disabled"]
  {{- end }}
  # Never the webhook's own namespace (it must not block its own pods) nor the control plane's.
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values: {{ include "entourage.excludedNamespaces" . }}
{{- end }}

{{/*
The container port of /healthz, /readyz and /metrics: "metrics" when there is a metrics port.
*/}}
{{- define "entourage.healthPort" -}}
{{- if gt (int .Values.server.metricsPort) 0 }}metrics{{ else }}https{{ end }}
{{- end }}

{{- define "entourage.configMapName" -}}
{{- printf "%s-config" (include "entourage.fullname" .) }}
{{- end }}

{{/*
Name of the Certificate (cert-manager mode) and of the Secret with tls.crt, tls.key and ca.crt.
*/}}
{{- define "entourage.certificateName" -}}
{{- printf "%s-tls" (include "entourage.fullname" .) }}
{{- end }}

{{- define "entourage.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "secret" }}
{{- required "certificates.secret.name is required when certificates.mode is secret" .Values.certificates.secret.name }}
{{- else }}
{{- include "entourage.certificateName" . }}
{{- end }}
{{- end }}

{{/*
DNS names the apiserver may use for the Service; the serving certificate covers all of them.
*/}}
{{- define "entourage.dnsNames" -}}
{{- $svc := include "entourage.serviceName" . }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{/*
Namespaces never sent to the webhook: its own (so it cannot block its own pods), the control plane's,
and the user's extra list.
*/}}
{{- define "entourage.excludedNamespaces" -}}
{{- concat (list .Release.Namespace "kube-system" "kube-node-lease") .Values.injection.excludedNamespaces | uniq | toJson }}
{{- end }}

{{/*
Checks that cannot be expressed in values.schema.json.
*/}}
{{- define "entourage.validate" -}}
{{- $s := .Values.shutdown }}
{{- if le (int $s.terminationGracePeriodSeconds) (add $s.preStopSleepSeconds $s.drainSeconds | int) }}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%v) must be greater than preStopSleepSeconds + drainSeconds (%v)" $s.terminationGracePeriodSeconds (add $s.preStopSleepSeconds $s.drainSeconds)) }}
{{- end }}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if and $pdb.enabled (not (kindIs "invalid" $pdb.minAvailable)) (not (kindIs "invalid" $pdb.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set only one of minAvailable and maxUnavailable (set the other to null)" }}
{{- end }}
{{- if and $pdb.enabled (kindIs "invalid" $pdb.minAvailable) (kindIs "invalid" $pdb.maxUnavailable) }}
{{- fail "podDisruptionBudget: set one of minAvailable and maxUnavailable" }}
{{- end }}
{{- $server := .Values.server }}
{{- if eq (int $server.metricsPort) (int $server.port) }}
{{- fail (printf "server.metricsPort (%v) must differ from server.port" $server.metricsPort) }}
{{- end }}
{{- if .Values.clientAuth.enabled }}
{{- if not .Values.clientAuth.caConfigMap }}
{{- fail "clientAuth.caConfigMap is required when clientAuth.enabled is true (a ConfigMap with the CA of the apiserver's client certificate)" }}
{{- end }}
{{- if eq (int $server.metricsPort) 0 }}
{{- fail "clientAuth needs server.metricsPort: the kubelet's probes present no client certificate" }}
{{- end }}
{{- end }}
{{- $c := .Values.certificates }}
{{- if and (eq $c.mode "cert-manager") $c.patchCABundle }}
{{- fail "certificates.patchCABundle is for the helm and secret modes; with cert-manager, its cainjector fills the caBundle" }}
{{- end }}
{{- if and (eq $c.mode "self-managed") $c.patchCABundle }}
{{- fail "certificates.patchCABundle is for the helm and secret modes; in self-managed mode the webhook always keeps its caBundle" }}
{{- end }}
{{- if eq $c.mode "secret" }}
{{- $_ := include "entourage.tlsSecretName" . }}
{{- if $c.secret.caBundle }}
{{- if not (contains "-----BEGIN CERTIFICATE-----" (b64dec $c.secret.caBundle)) }}
{{- fail "certificates.secret.caBundle must be a base64-encoded PEM certificate (base64 -w0 ca.crt)" }}
{{- end }}
{{- else if not $c.patchCABundle }}
{{- fail "certificates.secret.caBundle is required when certificates.mode is secret (or set certificates.patchCABundle=true)" }}
{{- end }}
{{- end }}
{{- end }}
