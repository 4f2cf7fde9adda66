{{/* The image every container runs: repository:tag, the tag defaulting to appVersion. */}}
{{- define "spidernet.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Labels on every object the chart makes. */}}
{{- define "spidernet.labels" -}}
app.kubernetes.io/part-of: spidernet
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* A component's log level: its own, else the chart's. */}}
{{- define "spidernet.logLevel" -}}
{{ .component.logLevel | default .root.Values.logLevel }}
{{- end }}

{{/* The controller's Service as the webhook's certificate names it. */}}
{{- define "spidernet.webhookHost" -}}
spidernet-controller.{{ .Release.Namespace }}.svc
{{- end }}
