{{/*
Names, labels and the pieces both roles' Deployments share.
*/}}

{{- define "inbox-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart>, or fullnameOverride; 63 characters at most (DNS label). */}}
{{- define "inbox-gateway.fullname" -}}
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

{{- define "inbox-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "inbox-gateway.labels" -}}
helm.sh/chart: {{ include "inbox-gateway.chart" . }}
{{ include "inbox-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selects every pod of the release, both roles. */}}
{{- define "inbox-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inbox-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "inbox-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "inbox-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "inbox-gateway.secretName" -}}
{{- default (include "inbox-gateway.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Where the secret files are mounted. */}}
{{- define "inbox-gateway.secretDir" -}}/run/secrets/inboxhub-gateway{{- end }}

{{/* Secret keys always mounted: the gateway cannot run without them (REDIS_URL: without it each
replica would keep its own state). */}}
{{- define "inbox-gateway.requiredSecretKeys" -}}
{{- list "INBOXHUB_IDENTIFIER" "INBOXHUB_PASSWORD" "INBOXHUB_API_KEY" "REDIS_URL" | toJson }}
{{- end }}

{{/* Every secret key the gateway reads through <KEY>_FILE. */}}
{{- define "inbox-gateway.knownSecretKeys" -}}
{{- list "INBOXHUB_IDENTIFIER" "INBOXHUB_PASSWORD" "INBOXHUB_API_KEY" "REDIS_URL" "GATEWAY_API_KEYS" "GATEWAY_JWT_HS256_SECRET" "GATEWAY_JWT_RS256_PUBLIC_KEY" "TOKEN_ENCRYPTION_KEY" "TOKEN_ENCRYPTION_OLD_KEYS" "INBOXHUB_WEBHOOK_SECRET" "CRM_SIGNING_SECRET" | toJson }}
{{- end }}

{{/* Variables the chart sets itself; `config` may not set them. */}}
{{- define "inbox-gateway.chartOwnedVariables" -}}
{{- list "GATEWAY_ADDR" "GATEWAY_ADMIN_ADDR" "GATEWAY_DRAIN_DELAY" "GATEWAY_SHUTDOWN_TIMEOUT" "GATEWAY_SYNC_WORKERS" "GATEWAY_WEBHOOK_WORKERS" "GATEWAY_WEBHOOK_SPOOL_DIR" "GATEWAY_WEBHOOK_SPOOL_MAX_BYTES" "UPSTREAM_QUOTA_FALLBACK" "GATEWAY_DEMO" | toJson }}
{{- end }}

{{/* The secret keys mounted, as a JSON list: the required ones, then the optional ones the Secret
holds (non-empty chart values, or existingSecretKeys). Unknown keys stop the rendering. */}}
{{- define "inbox-gateway.mountedSecretKeys" -}}
{{- $known := include "inbox-gateway.knownSecretKeys" . | fromJsonArray }}
{{- $keys := include "inbox-gateway.requiredSecretKeys" . | fromJsonArray }}
{{- $optional := list }}
{{- if .Values.secrets.existingSecret }}
{{- $optional = .Values.secrets.existingSecretKeys }}
{{- else }}
{{- range $k, $v := .Values.secrets.values }}
{{- if not (has $k $known) }}
{{- fail (printf "secrets.values.%s: not a secret the gateway reads (known: %s)" $k (join ", " $known)) }}
{{- end }}
{{- if ne (toString $v) "" }}
{{- $optional = append $optional $k }}
{{- end }}
{{- end }}
{{- end }}
{{- range $optional }}
{{- if not (has . $known) }}
{{- fail (printf "secrets.existingSecretKeys: %s is not a secret the gateway reads (known: %s)" . (join ", " $known)) }}
{{- end }}
{{- if not (has . $keys) }}
{{- $keys = append $keys . }}
{{- end }}
{{- end }}
{{- $keys | toJson }}
{{- end }}

{{/* Sum of the seconds a replica may take to stop: the preStop sleep, the drain delay, the
shutdown timeout, 13 s of background work (8 s for a sync page to checkpoint, 5 s for webhook
tasks; docs/operations.md "Stopping a replica") and the margin. */}}
{{- define "inbox-gateway.terminationGracePeriodSeconds" -}}
{{- $v := .Values }}
{{- add (int $v.preStopSleepSeconds) (int $v.drainDelaySeconds) (int $v.shutdownTimeoutSeconds) 13 (int $v.terminationGraceMarginSeconds) }}
{{- end }}

{{/* UPSTREAM_QUOTA_FALLBACK: the value given, or 1 / the largest fleet, rounded down. */}}
{{- define "inbox-gateway.quotaFallback" -}}
{{- if ne (toString .Values.quotaFallback) "" }}
{{- .Values.quotaFallback }}
{{- else }}
{{- $api := int .Values.api.replicas }}
{{- if .Values.api.autoscaling.enabled }}{{ $api = int .Values.api.autoscaling.maxReplicas }}{{ end }}
{{- $fleet := $api }}
{{- if .Values.workers.enabled }}{{ $fleet = add $fleet (int .Values.workers.replicas) }}{{ end }}
{{- $fleet = max $fleet 1 }}
{{- divf (floor (divf 1000 $fleet)) 1000 }}
{{- end }}
{{- end }}

{{/* Checks on values that would otherwise give a replica that cannot work. */}}
{{- define "inbox-gateway.validate" -}}
{{- $owned := include "inbox-gateway.chartOwnedVariables" . | fromJsonArray }}
{{- $known := include "inbox-gateway.knownSecretKeys" . | fromJsonArray }}
{{- range $k, $v := .Values.config }}
{{- if has $k $owned }}
{{- fail (printf "config.%s: set by the chart (see values.yaml)" $k) }}
{{- end }}
{{- if or (has $k $known) (has (trimSuffix "_FILE" $k) $known) (eq $k "GATEWAY_API_KEYS_FILE") (eq $k "GATEWAY_JWT_RS256_PUBLIC_KEY_FILE") }}
{{- fail (printf "config.%s: a secret; put it in secrets.values or the existing Secret, which the chart mounts as a file" $k) }}
{{- end }}
{{- end }}
{{- if .Values.workers.enabled }}
{{- if lt (int .Values.workers.syncWorkers) 1 }}
{{- fail "workers.syncWorkers: at least 1 when workers.enabled (the API replicas run none)" }}
{{- end }}
{{- if lt (int .Values.workers.webhookWorkers) 1 }}
{{- fail "workers.webhookWorkers: at least 1 when workers.enabled (the API replicas run none)" }}
{{- end }}
{{- if lt (int .Values.workers.replicas) 1 }}
{{- fail "workers.replicas: at least 1 when workers.enabled" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The pod template of one role. Call with (dict "root" $ "role" "api"|"worker" "r" <role values>
"syncWorkers" N "webhookWorkers" N).
*/}}
{{- define "inbox-gateway.podTemplate" -}}
{{- $root := .root }}
{{- $r := .r }}
{{- $secretDir := include "inbox-gateway.secretDir" $root }}
metadata:
  labels:
    {{- include "inbox-gateway.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .role }}
    {{- with $r.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- if not $root.Values.secrets.existingSecret }}
    checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
    {{- end }}
    {{- with $r.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "inbox-gateway.serviceAccountName" $root }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ include "inbox-gateway.terminationGracePeriodSeconds" $root }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    fsGroup: 65532
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: gateway
      {{- $img := $root.Values.image }}
      image: {{ if $img.digest }}{{ printf "%s@%s" $img.repository $img.digest | quote }}{{ else }}{{ printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) | quote }}{{ end }}
      imagePullPolicy: {{ $img.pullPolicy }}
      ports:
        - name: http
          containerPort: 8080
          protocol: TCP
        - name: admin
          containerPort: 9090
          protocol: TCP
      env:
        - name: GATEWAY_ADDR
          value: ":8080"
        - name: GATEWAY_ADMIN_ADDR
          value: ":9090"
        - name: GATEWAY_DRAIN_DELAY
          value: {{ printf "%ds" (int $root.Values.drainDelaySeconds) | quote }}
        - name: GATEWAY_SHUTDOWN_TIMEOUT
          value: {{ printf "%ds" (int $root.Values.shutdownTimeoutSeconds) | quote }}
        - name: GATEWAY_SYNC_WORKERS
          value: {{ .syncWorkers | toString | quote }}
        - name: GATEWAY_WEBHOOK_WORKERS
          value: {{ .webhookWorkers | toString | quote }}
        - name: GATEWAY_WEBHOOK_SPOOL_DIR
          value: /var/lib/inboxhub-gateway/webhook-spool
        - name: GATEWAY_WEBHOOK_SPOOL_MAX_BYTES
          value: {{ int64 $root.Values.webhookSpool.maxBytes | toString | quote }}
        - name: UPSTREAM_QUOTA_FALLBACK
          value: {{ include "inbox-gateway.quotaFallback" $root | quote }}
        {{- range $k, $v := $root.Values.config }}
        {{- if ne (toString $v) "" }}
        - name: {{ $k }}
          value: {{ toString $v | quote }}
        {{- end }}
        {{- end }}
        {{- range include "inbox-gateway.mountedSecretKeys" $root | fromJsonArray }}
        - name: {{ . }}_FILE
          value: {{ printf "%s/%s" $secretDir . }}
        {{- end }}
      {{- if $root.Values.preStopSleepSeconds }}
      lifecycle:
        preStop:
          sleep:
            seconds: {{ int $root.Values.preStopSleepSeconds }}
      {{- end }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        periodSeconds: {{ $root.Values.probes.liveness.periodSeconds }}
        timeoutSeconds: {{ $root.Values.probes.liveness.timeoutSeconds }}
        failureThreshold: {{ $root.Values.probes.liveness.failureThreshold }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        periodSeconds: {{ $root.Values.probes.readiness.periodSeconds }}
        timeoutSeconds: {{ $root.Values.probes.readiness.timeoutSeconds }}
        failureThreshold: {{ $root.Values.probes.readiness.failureThreshold }}
      {{- with $r.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        allowPrivilegeEscalation: false
        privileged: false
        readOnlyRootFilesystem: true
        capabilities:
          drop: ["ALL"]
        seccompProfile:
          type: RuntimeDefault
      volumeMounts:
        - name: secrets
          mountPath: {{ $secretDir }}
          readOnly: true
        - name: state
          mountPath: /var/lib/inboxhub-gateway
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: secrets
      secret:
        secretName: {{ include "inbox-gateway.secretName" $root }}
        defaultMode: 0440
        items:
          {{- range include "inbox-gateway.mountedSecretKeys" $root | fromJsonArray }}
          - key: {{ . }}
            path: {{ . }}
          {{- end }}
    - name: state
      emptyDir:
        sizeLimit: {{ $root.Values.webhookSpool.sizeLimit }}
    - name: tmp
      emptyDir:
        sizeLimit: 16Mi
  {{- with $r.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $r.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $r.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $r.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
