{{/* Names, labels and image references shared by every template. */}}

{{- define "sdxl-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name: the release name alone when it already says "sdxl-operator". */}}
{{- define "sdxl-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "sdxl-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sdxl-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sdxl-operator
{{- end }}

{{- define "sdxl-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sdxl-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sdxl-operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "sdxl-operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sdxl-operator.workloadServiceAccountName" -}}
{{- default (printf "%s-workload" (include "sdxl-operator.fullname" .) | trunc 63 | trimSuffix "-") .Values.workloadServiceAccount.name }}
{{- end }}

{{/* Namespaces that get a workload ServiceAccount: the watched ones, or (cluster-wide) the
release namespace plus workloadServiceAccount.extraNamespaces. Returned as a JSON list. */}}
{{- define "sdxl-operator.workloadNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- .Values.watchNamespaces | uniq | toJson }}
{{- else }}
{{- prepend .Values.workloadServiceAccount.extraNamespaces .Release.Namespace | uniq | toJson }}
{{- end }}
{{- end }}

{{/* "repository@digest" when a digest is set, else "repository:tag" (tag defaults to appVersion).
Call with (dict "image" .Values.images.X "root" $). */}}
{{- define "sdxl-operator.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* The pool the compile Jobs run on, per compile.onNeuron. */}}
{{- define "sdxl-operator.compilePool" -}}
{{- if .Values.compile.onNeuron }}
{{- toJson .Values.compile.neuronPool }}
{{- else }}
{{- toJson .Values.compile.cpuPool }}
{{- end }}
{{- end }}
