{{- define "bitnet.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "bitnet.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "bitnet.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Memory request: the mapped weights plus KV caches and runtime, in MiB. */}}
{{- define "bitnet.memoryRequestMiB" -}}
{{- add (div (int64 .Values.model.fileBytes) 1048576) (int64 .Values.resources.kvAndRuntimeMiB) -}}
{{- end -}}
