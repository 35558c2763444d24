{{/* Names, labels and the executor settings file. */}}

{{- define "kubejobs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubejobs.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kubejobs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubejobs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kubejobs.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kubejobs.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The Jobs' namespace: config.namespace, else the release namespace. */}}
{{- define "kubejobs.jobsNamespace" -}}
{{- default .Release.Namespace .Values.config.namespace -}}
{{- end -}}

{{- define "kubejobs.serviceAccountName" -}}
{{- default (include "kubejobs.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "kubejobs.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "kubejobs.colonyKeySecret" -}}
{{- default (printf "%s-colony-key" (include "kubejobs.fullname" .)) .Values.colonyKey.secretName -}}
{{- end -}}

{{- define "kubejobs.templatesConfigMap" -}}
{{- default (printf "%s-templates" (include "kubejobs.fullname" .)) .Values.templatesConfigMap -}}
{{- end -}}

{{- define "kubejobs.hasTemplates" -}}
{{- if or .Values.templates .Values.templatesConfigMap -}}true{{- end -}}
{{- end -}}

{{/* Major.minor of the cluster; managed clusters report minors like "30+". */}}
{{- define "kubejobs.clusterVersion" -}}
{{- printf "%s.%s" (regexReplaceAll "[^0-9]" .Capabilities.KubeVersion.Major "") (regexReplaceAll "[^0-9]" .Capabilities.KubeVersion.Minor "") -}}
{{- end -}}

{{/*
Per-replica executors (a StatefulSet): statefulSet.enabled. More than one
replica needs it, and it needs generated keys: one key given for all replicas
would make them one executor taking work twice and reconciling the same Jobs.
*/}}
{{- define "kubejobs.perReplica" -}}
{{- $key := .Values.executorKey -}}
{{- if and (gt (int .Values.replicaCount) 1) (ne $key.source "generate") -}}
{{- fail (printf "replicaCount %v with one executor key (executorKey.source=%s) would run %v executors with one identity, each taking work and reconciling the others' Jobs. Set executorKey.source=generate, a colonyKey and statefulSet.enabled=true: each replica then generates and registers its own key (Secret %s-<ordinal>) as executor <executor_name>-<ordinal>" .Values.replicaCount $key.source .Values.replicaCount $key.secretName) -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.statefulSet.enabled) -}}
{{- fail "replicaCount > 1 needs statefulSet.enabled=true: every replica is then an executor of its own, named <executor_name>-<ordinal>. This renames the running executor: see docs/production.md, Scale-out" -}}
{{- end -}}
{{- if .Values.statefulSet.enabled -}}
{{- if ne $key.source "generate" -}}
{{- fail (printf "statefulSet.enabled needs executorKey.source=generate and a colonyKey: each replica generates and registers its own key (Secret %s-<ordinal>); one key from executorKey.source=%s would make the replicas one executor" $key.secretName $key.source) -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{/* Mount points inside the executor container. */}}
{{- define "kubejobs.configDir" -}}/etc/kubejobs/config{{- end -}}
{{- define "kubejobs.templatesDir" -}}/etc/kubejobs/templates{{- end -}}
{{- define "kubejobs.executorKeyDir" -}}/var/run/secrets/kubejobs/executor-key{{- end -}}
{{- define "kubejobs.colonyKeyDir" -}}/var/run/secrets/kubejobs/colony-key{{- end -}}
{{- define "kubejobs.coloniesCADir" -}}/etc/kubejobs/colonies-ca{{- end -}}

{{/* The Colonies CA (config.colonies_ca_configmap or _secret): also mounted into the executor. */}}
{{- define "kubejobs.hasColoniesCA" -}}
{{- if and .Values.config.colonies_ca_configmap .Values.config.colonies_ca_secret -}}
{{- fail "set config.colonies_ca_configmap or config.colonies_ca_secret, not both" -}}
{{- end -}}
{{- if or .Values.config.colonies_ca_configmap .Values.config.colonies_ca_secret -}}true{{- end -}}
{{- end -}}

{{/*
The executor settings file: every `config` value, the chart's defaults for the
empty ones that have one, and the settings the chart derives from other values.
Written as JSON (valid YAML) so every value keeps its type.
*/}}
{{- define "kubejobs.settings" -}}
{{- $s := deepCopy .Values.config -}}
{{- $_ := set $s "executor_name" (default (include "kubejobs.fullname" .) $s.executor_name) -}}
{{- $_ := set $s "namespace" (include "kubejobs.jobsNamespace" .) -}}
{{- $_ := set $s "kube_version" (default (include "kubejobs.clusterVersion" .) $s.kube_version) -}}
{{- $_ := set $s "inpod_image" (default (include "kubejobs.image" .) $s.inpod_image) -}}
{{- $_ := set $s "service_account" .Values.logShipper.serviceAccount.name -}}
{{- $_ := set $s "executor_key_secret" .Values.executorKey.secretName -}}
{{- if ne .Values.executorKey.source "generate" -}}
{{- $_ := set $s "executor_prvkey_file" (printf "%s/prvkey" (include "kubejobs.executorKeyDir" .)) -}}
{{- end -}}
{{- if ne .Values.colonyKey.source "none" -}}
{{- $_ := set $s "colony_prvkey_file" (printf "%s/%s" (include "kubejobs.colonyKeyDir" .) .Values.colonyKey.secretKey) -}}
{{- end -}}
{{- if include "kubejobs.hasTemplates" . -}}
{{- $_ := set $s "templates_dir" (include "kubejobs.templatesDir" .) -}}
{{- end -}}
{{- if include "kubejobs.hasColoniesCA" . -}}
{{- $_ := set $s "colonies_ca_file" (printf "%s/ca.crt" (include "kubejobs.coloniesCADir" .)) -}}
{{- end -}}
{{- toPrettyJson $s -}}
{{- end -}}
