{{/* The chart's name, or nameOverride. */}}
{{- define "insitu.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object names: the release, with the chart's name unless the release has it already. */}}
{{- define "insitu.fullname" -}}
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

{{- define "insitu.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "insitu.selectorLabels" -}}
app.kubernetes.io/name: {{ include "insitu.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "insitu.labels" -}}
helm.sh/chart: {{ include "insitu.chart" . }}
{{ include "insitu.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "insitu.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
serve.toml. Strings and numbers go through toJson: a JSON string is a TOML basic string, and
toJson writes Helm's float64 numbers without an exponent (1e+07 would not be a TOML integer).
*/}}
{{- define "insitu.serveToml" -}}
# Rendered by the insitu chart from its values; see server/src/serve_config.rs.
cache_dir = "/var/cache/insitu"
state_dir = "/var/lib/insitu"
{{- with .Values.baseUrl }}
base_url = {{ toJson . }}
{{- end }}

[tables]
{{- range $name, $path := .Values.tables }}
{{ toJson $name }} = {{ toJson $path }}
{{- end }}

[volumes]
{{- range .Values.volumes }}
{{ toJson .name }} = {{ toJson .path }}
{{- end }}

[limits]
{{- range $key, $value := .Values.limits }}
{{ $key }} = {{ toJson $value }}
{{- end }}
{{- if .Values.launcher.enabled }}

[launcher]
datalabs = "/etc/insitu/datalabs"
users = {{ printf "/etc/insitu/users/%s" .Values.launcher.usersSecret.key | toJson }}
workspaces = "/srv/insitu/workspaces"
{{- range $key, $value := .Values.launcher.settings }}
{{- if not (kindIs "map" $value) }}
{{ $key }} = {{ toJson $value }}
{{- end }}
{{- end }}
{{- range $key, $value := .Values.launcher.settings }}
{{- if kindIs "map" $value }}

[launcher.{{ $key }}]
{{- range $k, $v := $value }}
{{ $k }} = {{ toJson $v }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
