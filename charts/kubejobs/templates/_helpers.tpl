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

{{/*
Names of the objects every release has one of in the Jobs' namespace: the log
shipper's ServiceAccount, the executor key Secret and a chart-made S3 Secret.
Empty values get release-scoped names, so releases side by side in one namespace
(a CPU pool beside a GPU pool) neither collide nor share a key. An upgrade keeps
the names the release already runs with (read from its settings ConfigMap), as
renaming the key Secret would make a new executor and orphan its running
processes, and renaming the ServiceAccount would invalidate the tokens of running
Jobs' log shippers. Charts before 0.1.0's release-scoped names used
kubejobs-log-shipper, kubejobs-executor-key and kubejobs-s3 in every release.
`lookup` answers nothing under `helm template` (and tools that render with it):
there the defaults are the new names; see docs/production.md, Upgrades.
*/}}
{{- define "kubejobs.previousSettings" -}}
{{- $found := lookup "v1" "ConfigMap" .Release.Namespace (printf "%s-settings" (include "kubejobs.fullname" .)) -}}
{{- $text := "" -}}
{{- if and $found $found.data -}}
{{- $text = index $found.data "settings.yaml" | default "" -}}
{{- end -}}
{{- if $text -}}{{- $text -}}{{- else -}}{}{{- end -}}
{{- end -}}

{{- define "kubejobs.shipperServiceAccount" -}}
{{- $previous := include "kubejobs.previousSettings" . | fromJson -}}
{{- .Values.logShipper.serviceAccount.name | default $previous.service_account | default (printf "%s-log-shipper" (include "kubejobs.fullname" .)) -}}
{{- end -}}

{{- define "kubejobs.executorKeySecret" -}}
{{- $previous := include "kubejobs.previousSettings" . | fromJson -}}
{{- .Values.executorKey.secretName | default $previous.executor_key_secret | default (printf "%s-executor-key" (include "kubejobs.fullname" .)) -}}
{{- end -}}

{{- define "kubejobs.s3Secret" -}}
{{- $previous := include "kubejobs.previousSettings" . | fromJson -}}
{{- $default := ternary (printf "%s-s3" (include "kubejobs.fullname" .)) "kubejobs-s3" (eq (toString .Values.s3Secret.create) "true") -}}
{{- .Values.config.s3_secret | default $previous.s3_secret | default $default -}}
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
{{- fail (printf "replicaCount %v with one executor key (executorKey.source=%s) would run %v executors with one identity, each taking work and reconciling the others' Jobs. Set executorKey.source=generate, a colonyKey and statefulSet.enabled=true: each replica then generates and registers its own key (Secret %s-<ordinal>) as executor <executor_name>-<ordinal>" .Values.replicaCount $key.source .Values.replicaCount (include "kubejobs.executorKeySecret" .)) -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.statefulSet.enabled) -}}
{{- fail "replicaCount > 1 needs statefulSet.enabled=true: every replica is then an executor of its own, named <executor_name>-<ordinal>. This renames the running executor: see docs/production.md, Scale-out" -}}
{{- end -}}
{{- if .Values.statefulSet.enabled -}}
{{- if ne $key.source "generate" -}}
{{- fail (printf "statefulSet.enabled needs executorKey.source=generate and a colonyKey: each replica generates and registers its own key (Secret %s-<ordinal>); one key from executorKey.source=%s would make the replicas one executor" (include "kubejobs.executorKeySecret" .) $key.source) -}}
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
{{- $_ := set $s "service_account" (include "kubejobs.shipperServiceAccount" .) -}}
{{- $_ := set $s "executor_key_secret" (include "kubejobs.executorKeySecret" .) -}}
{{- $_ := set $s "s3_secret" (include "kubejobs.s3Secret" .) -}}
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
