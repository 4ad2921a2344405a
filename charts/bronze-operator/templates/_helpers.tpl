{{/* Names ------------------------------------------------------------------------------- */}}

{{- define "bronze-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bronze-operator.fullname" -}}
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

{{- define "bronze-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bronze-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bronze-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "bronze-operator.labels" -}}
helm.sh/chart: {{ include "bronze-operator.chart" . }}
{{ include "bronze-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: bronze
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "bronze-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bronze-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "bronze-operator.workerServiceAccountName" -}}
{{- default (printf "%s-worker" (include "bronze-operator.fullname" . | trunc 56 | trimSuffix "-")) .Values.workers.serviceAccount.name }}
{{- end }}

{{/* The namespace the operator watches: "" means all namespaces. */}}
{{- define "bronze-operator.watchNamespace" -}}
{{- if .Values.operator.watchNamespace }}
{{- .Values.operator.watchNamespace }}
{{- else if eq .Values.rbac.scope "namespace" }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}

{{/* Where BronzeBackfills live: worker ServiceAccount and credential Secrets go there. */}}
{{- define "bronze-operator.workersNamespace" -}}
{{- .Values.workers.namespace | default (include "bronze-operator.watchNamespace" .) | default .Release.Namespace }}
{{- end }}

{{- define "bronze-operator.leaseName" -}}
{{- default (include "bronze-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "bronze-operator.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "bronze-operator.workerImage" -}}
{{- if .Values.workers.image.repository }}
{{- printf "%s:%s" .Values.workers.image.repository (default .Chart.AppVersion .Values.workers.image.tag) }}
{{- else }}
{{- include "bronze-operator.image" . }}
{{- end }}
{{- end }}

{{/* Credential Secrets: name of the Secret in use, or "" when the credential is not configured. */}}
{{- define "bronze-operator.s3Secret" -}}
{{- if .Values.credentials.s3.existingSecret }}
{{- .Values.credentials.s3.existingSecret }}
{{- else if .Values.credentials.s3.accessKeyId }}
{{- printf "%s-s3" (include "bronze-operator.fullname" .) }}
{{- end }}
{{- end }}

{{/* "true" when the S3 Secret carries a session token. */}}
{{- define "bronze-operator.s3SessionToken" -}}
{{- $c := .Values.credentials.s3 }}
{{- if or (and $c.existingSecret $c.sessionTokenKey) (and (not $c.existingSecret) $c.sessionToken) }}true{{ end }}
{{- end }}

{{- define "bronze-operator.gcsSecret" -}}
{{- if .Values.credentials.gcs.existingSecret }}
{{- .Values.credentials.gcs.existingSecret }}
{{- else if .Values.credentials.gcs.serviceAccountKey }}
{{- printf "%s-gcs" (include "bronze-operator.fullname" .) }}
{{- end }}
{{- end }}

{{- define "bronze-operator.catalogSecret" -}}
{{- if .Values.credentials.catalog.existingSecret }}
{{- .Values.credentials.catalog.existingSecret }}
{{- else if .Values.credentials.catalog.dsn }}
{{- printf "%s-catalog" (include "bronze-operator.fullname" .) }}
{{- end }}
{{- end }}

{{- define "bronze-operator.pasSecret" -}}
{{- if .Values.credentials.pas.existingSecret }}
{{- .Values.credentials.pas.existingSecret }}
{{- else if .Values.credentials.pas.token }}
{{- printf "%s-pas" (include "bronze-operator.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The operator's environment variables from Secret keys, as a YAML list of {name, secretName, key,
optional}: the PAS token and the catalog DSN Secrets (when configured) under credentials.*.env,
then operator.secretEnv. BronzeBackfills name these variables (spec.pas.tokenEnv); the operator
never reads a Secret through the API.
*/}}
{{- define "bronze-operator.secretEnv" -}}
{{- $out := list }}
{{- with include "bronze-operator.pasSecret" . }}
{{- $out = append $out (dict "name" $.Values.credentials.pas.env "secretName" . "key" $.Values.credentials.pas.key) }}
{{- end }}
{{- with include "bronze-operator.catalogSecret" . }}
{{- $out = append $out (dict "name" $.Values.credentials.catalog.env "secretName" . "key" $.Values.credentials.catalog.key) }}
{{- end }}
{{- range .Values.operator.secretEnv }}
{{- $out = append $out . }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
The RBAC rules of the operator: exactly operator/rbac.yaml (= reconcile::API_CALLS in the
operator's code). The chart's tests compare the rendered rules with API_CALLS, so a new API call
in the operator fails CI until it is granted here.
*/}}
{{- define "bronze-operator.rules" -}}
- apiGroups: ["bronze.obsrvr.io"]
  resources: ["bronzebackfills"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["bronze.obsrvr.io"]
  resources: ["bronzebackfills/status"]
  verbs: ["patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Leases: get/update only the operator's own Lease (create cannot be limited by name). */}}
{{- define "bronze-operator.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ include "bronze-operator.leaseName" . | quote }}]
  verbs: ["get", "update"]
{{- end }}
