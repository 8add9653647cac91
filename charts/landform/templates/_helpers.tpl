{{- define "landform.labels" -}}
app.kubernetes.io/name: landform
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "landform.base" -}}
app.kubernetes.io/name: landform
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "landform.selector" -}}
{{ include "landform.base" . }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "landform.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
