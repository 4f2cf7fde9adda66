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

{{/* The controller's read of kube-system's CIDR sources (the SpiderCoordinator status):
kubeadm's ClusterConfiguration and Cilium's config, those two only. */}}
{{- define "spidernet.cidrConfigMaps" -}}
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [kubeadm-config, cilium-config]
  verbs: [get]
{{- end }}
