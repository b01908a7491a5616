{{- define "ecdctr.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ecdctr.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "ecdctr.serviceAccountName" -}}
{{- default (include "ecdctr.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* chart value under .Values.secrets -> the key in the Secret: the environment variable the
     pipeline settings read (core/settings.py SecretStr settings, ECDCTR_<SECTION>__<KEY>) */}}
{{- define "ecdctr.secretKeys" -}}
storeAccessKeyId: ECDCTR_STORE__ACCESS_KEY_ID
storeSecretAccessKey: ECDCTR_STORE__SECRET_ACCESS_KEY
alertsWebhookUrl: ECDCTR_ALERTS__WEBHOOK_URL
alertsSmtpPassword: ECDCTR_ALERTS__SMTP_PASSWORD
alertsSlackWebhookUrl: ECDCTR_ALERTS__SLACK_WEBHOOK_URL
alertsTeamsWebhookUrl: ECDCTR_ALERTS__TEAMS_WEBHOOK_URL
alertsPagerdutyRoutingKey: ECDCTR_ALERTS__PAGERDUTY_ROUTING_KEY
{{- end -}}

{{/* "true" when any secret value is given to the chart (it then creates the Secret) */}}
{{- define "ecdctr.secretValuesGiven" -}}
{{- $s := .Values.secrets | default dict -}}
{{- range $value, $_ := include "ecdctr.secretKeys" . | fromYaml -}}
{{- if get $s $value }}true{{ end -}}
{{- end -}}
{{- end -}}

{{/* The Secret every pipeline pod loads: secrets.existingSecret, else the one the chart creates
     from the secrets.* values, else none (empty: credentials from the ServiceAccount's IAM role) */}}
{{- define "ecdctr.secretName" -}}
{{- $s := .Values.secrets | default dict -}}
{{- if and $s.existingSecret (include "ecdctr.secretValuesGiven" .) -}}
{{- fail "secrets: give either secrets.existingSecret (a Secret you created) or the secret values for the chart to create one, not both" -}}
{{- end -}}
{{- if $s.existingSecret -}}
{{- $s.existingSecret -}}
{{- else if include "ecdctr.secretValuesGiven" . -}}
{{- printf "%s-secrets" (include "ecdctr.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* A serving-sync container of the serving pod (init container and sidecar): the image, the
     settings as the DAGs' pods get them (ConfigMap file, Secret envFrom) and the
     models volume. Called with (dict "root" $ "image" $image). */}}
{{- define "ecdctr.servingSync" -}}
{{- $v := .root.Values -}}
image: "{{ .image.repository }}:{{ .image.tag }}"
imagePullPolicy: {{ .image.pullPolicy | default "IfNotPresent" }}
command: ["ecdctr"]
env:
  - name: ECDCTR_CONFIG
    value: /etc/ecdctr/config.yaml
  - name: ECDCTR_LOG_LEVEL
    value: INFO
{{- with include "ecdctr.secretName" .root }}
envFrom:
  - secretRef:
      name: {{ . | quote }}
      optional: true  # as the DAGs' pods (airflow_support.pod_manifest): every key is optional
{{- end }}
resources:
  {{- toYaml $v.serving.sync.resources | nindent 2 }}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
volumeMounts:
  - name: models
    mountPath: /models
  - name: sync-tmp
    mountPath: /tmp
  - name: config
    mountPath: /etc/ecdctr
    readOnly: true
{{- end -}}

{{/* Kubernetes resources ({requests, limits} of quantities) with every quantity a string, as the
     settings' orchestration.kubernetes.*_resources read them (cpu: 4 and cpu: "4" alike) */}}
{{- define "ecdctr.resourceStrings" -}}
{{- $out := dict -}}
{{- range $section, $quantities := . -}}
{{- $m := dict -}}
{{- range $name, $q := $quantities -}}
{{- $_ := set $m $name (toString $q) -}}
{{- end -}}
{{- $_ := set $out $section $m -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}
