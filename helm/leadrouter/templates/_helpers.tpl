{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "leadrouter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: "<release>-<chart>", or the release name when it already contains the
chart name. Truncated to 63 characters.
*/}}
{{- define "leadrouter.fullname" -}}
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
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "leadrouter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: the two labels that identify this release's pods. They go into immutable
selectors, so they never carry anything that changes between upgrades (no chart version).
*/}}
{{- define "leadrouter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "leadrouter.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}

{{/*
Selector labels of the worker pods: the selector labels plus the component, so that the topics
hook Job's pod is never selected by the worker's Service, PodDisruptionBudget or Deployment.
*/}}
{{- define "leadrouter.workerSelectorLabels" -}}
{{ include "leadrouter.selectorLabels" . }}
app.kubernetes.io/component: "worker"
{{- end }}

{{/*
Common labels: every resource's metadata.labels. Never used in a selector.
*/}}
{{- define "leadrouter.labels" -}}
helm.sh/chart: {{ include "leadrouter.chart" . | quote }}
{{ include "leadrouter.selectorLabels" . }}
app.kubernetes.io/version: {{ include "leadrouter.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/part-of: "leadrouter"
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The image tag: image.tag, or the chart's appVersion.
*/}}
{{- define "leadrouter.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
The image reference: repository@digest when a digest is set, repository:tag otherwise.
*/}}
{{- define "leadrouter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "leadrouter.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
The ServiceAccount the pods run as.
*/}}
{{- define "leadrouter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "leadrouter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The existing Secret with the broker connection.
*/}}
{{- define "leadrouter.kafkaSecretName" -}}
{{- .Values.kafka.existingSecret | default (printf "%s-kafka" (include "leadrouter.fullname" .)) }}
{{- end }}

{{/*
Where the config files, the local state and the brokers' CA certificate are mounted.
*/}}
{{- define "leadrouter.configDir" -}}/etc/leadrouter{{- end }}
{{- define "leadrouter.dataDir" -}}/var/lib/leadrouter{{- end }}
{{- define "leadrouter.caDir" -}}/etc/leadrouter-kafka-ca{{- end }}

{{/*
The config files as ConfigMap data: every file of files/config/, its content replaced by
config.<name without .yaml> when that value is set (config.publish is not a file). Fails when a
file would be empty, so that a chart whose defaults did not come along (e.g. a checkout without
them) never ships an empty config.
*/}}
{{- define "leadrouter.configData" -}}
{{- $data := dict }}
{{- range $path, $_ := .Files.Glob "files/config/*.yaml" }}
{{- $_ := set $data (base $path) "" }}
{{- end }}
{{- range $key, $_ := .Values.config }}
{{- if ne $key "publish" }}
{{- $_ := set $data (printf "%s.yaml" $key) "" }}
{{- end }}
{{- end }}
{{- range $name := keys $data }}
{{- $key := trimSuffix ".yaml" $name }}
{{- $content := (get $.Values.config $key) | default ($.Files.Get (printf "files/config/%s" $name)) }}
{{- if not (trim $content) }}
{{- fail (printf "config file %s is empty: set config.%s or restore files/config/%s in the chart" $name $key $name) }}
{{- end }}
{{- $_ := set $data $name $content }}
{{- end }}
{{- toYaml $data }}
{{- end }}

{{/*
"true" when the config is published (config.publish.enabled, by the topics hook Job, so with
topicsJob.enabled), "" when the workers run their files only.
*/}}
{{- define "leadrouter.publishesConfig" -}}
{{- if and .Values.config.publish.enabled .Values.topicsJob.enabled }}true{{ end }}
{{- end }}

{{/*
The note of the version the hook publishes: config.publish.note, or "helm <release> revision <N>"
(on `helm rollback` the hook of the revision rolled back to runs, with that revision's note).
*/}}
{{- define "leadrouter.publishNote" -}}
{{- .Values.config.publish.note | default (printf "helm %s revision %d" .Release.Name (int .Release.Revision)) }}
{{- end }}

{{/*
The worker pods' checksum/config annotation: what, changed, restarts the workers. Published, the
workers switch to a new version without a restart, and keep from their files only how the
process runs (settings.yaml: the broker, the store, metrics, ingest...): a checksum of
settings.yaml alone. Files only: a checksum of the whole config ConfigMap.
*/}}
{{- define "leadrouter.configChecksum" -}}
{{- if include "leadrouter.publishesConfig" . }}
{{- .Values.config.settings | default (.Files.Get "files/config/settings.yaml") | sha256sum }}
{{- else }}
{{- include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{/*
Environment of the worker and of the topics Job: where the config is, and the broker connection
from the existing Secret.
*/}}
{{- define "leadrouter.env" -}}
- name: LEADROUTER_CONFIG_DIR
  value: {{ include "leadrouter.configDir" . | quote }}
- name: KAFKA_BOOTSTRAP_SERVERS
  valueFrom:
    secretKeyRef:
      name: {{ include "leadrouter.kafkaSecretName" . | quote }}
      key: {{ .Values.kafka.secretKeys.bootstrapServers | quote }}
{{- range $env, $key := dict "LEADROUTER_KAFKA_SECURITY_PROTOCOL" .Values.kafka.secretKeys.securityProtocol "LEADROUTER_KAFKA_SASL_MECHANISM" .Values.kafka.secretKeys.saslMechanism "LEADROUTER_KAFKA_SASL_USERNAME" .Values.kafka.secretKeys.saslUsername "LEADROUTER_KAFKA_SASL_PASSWORD" .Values.kafka.secretKeys.saslPassword }}
{{- if $key }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "leadrouter.kafkaSecretName" $ | quote }}
      key: {{ $key | quote }}
      optional: true
{{- end }}
{{- end }}
{{- if .Values.kafka.caSecret.name }}
- name: LEADROUTER_KAFKA_SSL_CAFILE
  value: {{ printf "%s/%s" (include "leadrouter.caDir" .) .Values.kafka.caSecret.key | quote }}
{{- end }}
{{- if .Values.kafka.topicPrefix }}
- name: LEADROUTER_TOPIC_PREFIX
  value: {{ .Values.kafka.topicPrefix | quote }}
{{- end }}
{{- end }}

{{/*
The brokers' CA certificate volume and its mount, shared by the worker and the topics Job;
include them only when kafka.caSecret.name is set.
*/}}
{{- define "leadrouter.caVolume" -}}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.caSecret.name | quote }}
    items:
      - key: {{ .Values.kafka.caSecret.key | quote }}
        path: {{ .Values.kafka.caSecret.key | quote }}
{{- end }}

{{- define "leadrouter.caVolumeMount" -}}
- name: kafka-ca
  mountPath: {{ include "leadrouter.caDir" . | quote }}
  readOnly: true
{{- end }}

{{/*
The emptyDir of the worker's local state.
*/}}
{{- define "leadrouter.dataEmptyDir" -}}
{{- $emptyDir := dict }}
{{- with .Values.dataVolume.medium }}{{ $_ := set $emptyDir "medium" . }}{{ end }}
{{- with .Values.dataVolume.sizeLimit }}{{ $_ := set $emptyDir "sizeLimit" . }}{{ end }}
{{- toJson $emptyDir }}
{{- end }}

{{/*
What the worker's consumer group is, as the worker itself works it out: settings.yaml
(config.settings, or the chart's files/config/settings.yaml), then the chart's own
LEADROUTER_TOPIC_PREFIX (kafka.topicPrefix), then extraEnv, whose entries come last in the
container and so win. A YAML dict: groupId, topicPrefix, partitions (of every topic the worker
reads; `leadrouter topics apply` creates them with that count).
*/}}
{{- define "leadrouter.consumerGroup" -}}
{{- $text := .Values.config.settings | default (.Files.Get "files/config/settings.yaml") }}
{{- $settings := fromYaml $text }}
{{- if hasKey $settings "Error" }}
{{- fail (printf "settings.yaml (config.settings) is not a YAML mapping: %s" (get $settings "Error")) }}
{{- end }}
{{- $kafka := get $settings "kafka" | default dict }}
{{- $groupId := get $kafka "group_id" | default "leadrouter" | toString }}
{{- $prefix := get $kafka "topic_prefix" | default "" | toString }}
{{- $partitions := get $kafka "partitions" | default 6 }}
{{- with .Values.kafka.topicPrefix }}{{ $prefix = . }}{{ end }}
{{- range .Values.extraEnv }}
{{- if has .name (list "LEADROUTER_GROUP_ID" "LEADROUTER_TOPIC_PREFIX" "LEADROUTER_PARTITIONS") }}
{{- if hasKey . "valueFrom" }}
{{- fail (printf "keda: extraEnv sets %s with valueFrom, which the chart cannot read to find the worker's consumer group: give it a value" .name) }}
{{- end }}
{{- $value := .value | default "" | toString }}
{{- if $value }}
{{- if eq .name "LEADROUTER_GROUP_ID" }}{{ $groupId = $value }}{{ end }}
{{- if eq .name "LEADROUTER_TOPIC_PREFIX" }}{{ $prefix = $value }}{{ end }}
{{- if eq .name "LEADROUTER_PARTITIONS" }}{{ $partitions = $value }}{{ end }}
{{- end }}
{{- end }}
{{- end }}
{{- if not (regexMatch "^[0-9]+$" (toString $partitions)) }}
{{- fail (printf "keda: the worker's partition count %q (settings.yaml kafka.partitions or LEADROUTER_PARTITIONS) is not a whole number" (toString $partitions)) }}
{{- end }}
{{- if lt (int $partitions) 1 }}
{{- fail "keda: the worker's partition count (settings.yaml kafka.partitions or LEADROUTER_PARTITIONS) must be at least 1" }}
{{- end }}
groupId: {{ $groupId | quote }}
topicPrefix: {{ $prefix | quote }}
partitions: {{ int $partitions }}
{{- end }}

{{/*
A container of the topics hook Job: the image, environment, security context, resources and
mounts the topics Job has always had, running `leadrouter <args>` (the image's entrypoint is
leadrouter). Called with (dict "root" $ "name" NAME "args" LIST): `topics apply` and, when the
config is published, `config publish` run alike.
*/}}
{{- define "leadrouter.jobContainer" -}}
{{- $root := .root -}}
- name: {{ .name }}
  image: {{ include "leadrouter.image" $root | quote }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy | quote }}
  args:
    {{- range .args }}
    - {{ . | quote }}
    {{- end }}
  env:
    {{- include "leadrouter.env" $root | nindent 4 }}
    {{- with $root.Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $root.Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.topicsJob.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: config
      mountPath: {{ include "leadrouter.configDir" $root | quote }}
      readOnly: true
    - name: tmp
      mountPath: "/tmp"
    {{- if $root.Values.kafka.caSecret.name }}
    {{- include "leadrouter.caVolumeMount" $root | nindent 4 }}
    {{- end }}
{{- end }}
