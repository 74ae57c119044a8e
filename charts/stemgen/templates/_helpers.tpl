{{/*
Names and labels shared by every template. Kept in one place so the operator's settings, the
RBAC subjects and the objects they point at can never disagree about a name.
*/}}

{{- define "stemgen.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* At most 40 characters, so every suffix ("-operator-metrics", the longest) keeps names DNS-1123 labels. */}}
{{- define "stemgen.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "stemgen.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "stemgen.labels" -}}
helm.sh/chart: {{ include "stemgen.chart" . }}
app.kubernetes.io/name: {{ include "stemgen.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stemgen
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector of the operator pod; never changes between upgrades (Deployment selectors are immutable). */}}
{{- define "stemgen.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stemgen.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "stemgen.operator.fullname" -}}
{{- printf "%s-operator" (include "stemgen.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stemgen.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "stemgen.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "stemgen.runner.fullname" -}}
{{- printf "%s-runner" (include "stemgen.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stemgen.runner.serviceAccountName" -}}
{{- if .Values.runner.serviceAccount.create }}
{{- default (include "stemgen.runner.fullname" .) .Values.runner.serviceAccount.name }}
{{- else }}
{{- required "runner.serviceAccount.name is required when runner.serviceAccount.create is false" .Values.runner.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The claim runner and warmup pods mount. */}}
{{- define "stemgen.modelCache.claimName" -}}
{{- default (printf "%s-model-cache" (include "stemgen.fullname" .)) .Values.modelCache.existingClaim }}
{{- end }}

{{/* Namespaces where requests run: `namespaces`, or the release namespace. Output: a JSON list. */}}
{{- define "stemgen.namespaces" -}}
{{- if .Values.namespaces }}
{{- .Values.namespaces | uniq | toJson }}
{{- else }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/* `repository:tag` or `repository@digest`; the tag defaults to the chart's appVersion. */}}
{{- define "stemgen.image" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* Hardened container securityContext shared by the operator and the warmup pod. */}}
{{- define "stemgen.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The operator's rules on requests and their Jobs: a Role per namespace, or the ClusterRole with scope=cluster. */}}
{{- define "stemgen.operator.workloadRules" -}}
- apiGroups: ["stemgen.io"]
  resources: ["stemgenerations"]
  verbs: ["get", "list", "watch", "patch", "update", "delete"]
- apiGroups: ["stemgen.io"]
  resources: ["stemgenerations/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["stemgen.io"]
  resources: ["stemgenerations/finalizers"]
  verbs: ["update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
A pool as the operator's PoolSettings JSON. Quantities become strings (the operator's model takes
Kubernetes quantities as text, and YAML would hand it numbers for `cpu: 4`). A disabled CPU pool
gets limit 0: the operator then admits nothing there (requests wait Queued).
Arguments: (list <pool values> <is the GPU pool>).
*/}}
{{- define "stemgen.poolSettings" -}}
{{- $pool := index . 0 }}
{{- $gpu := index . 1 }}
{{- $resources := dict }}
{{- range $kind := list "requests" "limits" }}
{{- $quantities := dict }}
{{- range $name, $quantity := (get (default dict $pool.resources) $kind) }}
{{- $_ := set $quantities $name (toString $quantity) }}
{{- end }}
{{- $_ := set $resources $kind $quantities }}
{{- end }}
{{- $settings := dict "limit" (ternary (int $pool.maxConcurrent) 0 $pool.enabled) "nodeSelector" (default dict $pool.nodeSelector) "tolerations" (default list $pool.tolerations) "resources" $resources }}
{{- if $gpu }}
{{- $_ := set $settings "gpus" (int (default 1 $pool.gpus)) }}
{{- $_ := set $settings "gpuResource" (default "nvidia.com/gpu" $pool.gpuResource) }}
{{- end }}
{{- with $pool.priorityClassName }}
{{- $_ := set $settings "priorityClassName" . }}
{{- end }}
{{- toJson $settings }}
{{- end }}
