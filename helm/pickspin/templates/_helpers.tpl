{{/* ---- names -------------------------------------------------------------------------- */}}
{{- define "pickspin.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pickspin.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "pickspin.routerName" -}}{{ include "pickspin.fullname" . }}-router{{- end -}}
{{- define "pickspin.scorerName" -}}{{ include "pickspin.fullname" . }}-scorer{{- end -}}
{{- define "pickspin.scalerName" -}}{{ include "pickspin.fullname" . }}-scaler{{- end -}}
{{- define "pickspin.configName" -}}{{ include "pickspin.fullname" . }}-config{{- end -}}

{{- define "pickspin.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "pickspin.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pickspin
{{- end -}}

{{- define "pickspin.selector" -}}
app.kubernetes.io/name: {{ include "pickspin.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* image reference: (dict "root" $ "image" .Values.router.image) */}}
{{- define "pickspin.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* http://<ksvc>.<namespace>.svc.<domain>: (dict "root" $ "name" "x") */}}
{{- define "pickspin.ksvcUrl" -}}
{{- printf "http://%s.%s.svc.%s" .name .root.Release.Namespace .root.Values.clusterDomain -}}
{{- end -}}

{{- define "pickspin.scalerAddress" -}}
{{- printf "%s.%s.svc.%s:%v" (include "pickspin.scalerName" .) .Release.Namespace .Values.clusterDomain .Values.scaler.port -}}
{{- end -}}

{{/* ---- one model's resolved values ------------------------------------------------------ */}}
{{/* scaling block with the service matrix's defaults and the tier's warm pool applied (YAML) */}}
{{- define "pickspin.scaling" -}}
{{- $m := .m -}}
{{- $s := $m.scaling | default dict -}}
{{- $wp := 0 -}}
{{- if and (hasKey $s "warm_pool") (not (kindIs "invalid" $s.warm_pool)) -}}
{{- $wp = $s.warm_pool -}}
{{- else -}}
{{- $t := get (.root.Values.tiers | default dict) $m.tier | default dict -}}
{{- $wp = $t.warm_pool | default 0 -}}
{{- end -}}
concurrency: {{ $s.concurrency | default 4 }}
warm_pool: {{ $wp }}
max_replicas: {{ $s.max_replicas | default 4 }}
idle_seconds: {{ if hasKey $s "idle_seconds" }}{{ $s.idle_seconds }}{{ else }}300{{ end }}
{{- if eq ($s.keep_warm | default "fixed") "adaptive" }}
{{- /* adaptive keep-warm prices a cold start in GPU-seconds: the backend pod's GPUs */}}
keep_warm: adaptive
gpus: {{ max 1 (($m.backend | default dict).gpus | default 1) }}
slo_miss_gpu_s: {{ if hasKey $s "slo_miss_gpu_s" }}{{ $s.slo_miss_gpu_s }}{{ else }}60{{ end }}
{{- end }}
{{- end -}}

{{/* backend block merged over backendDefaults (YAML) */}}
{{- define "pickspin.backend" -}}
{{- $b := merge (deepCopy (.m.backend | default dict)) (deepCopy (.root.Values.backendDefaults | default dict)) -}}
{{- toYaml $b -}}
{{- end -}}

{{/* the external-push trigger metadata of one model (YAML map of strings). Only values that the
  service matrix also holds, so the scaler's --config pre-poll and the trigger ask the same queries. */}}
{{- define "pickspin.triggerMetadata" -}}
{{- $sc := include "pickspin.scaling" . | fromYaml -}}
{{- $md := dict "scalerAddress" (include "pickspin.scalerAddress" .root) "model" .m.name "tier" .m.tier "concurrency" (toString $sc.concurrency) "warmPool" (toString $sc.warm_pool) "idleSeconds" (toString $sc.idle_seconds) -}}
{{- /* the router's series carry the release namespace: two releases sharing a Prometheus stay apart */ -}}
{{- $_ := set $md "metricsNamespace" .root.Release.Namespace -}}
{{- if eq ($sc.keep_warm | default "fixed") "adaptive" -}}
{{- /* tau and the floor learned by the scaler from this model's idle gaps and busy hours */ -}}
{{- $b := include "pickspin.backend" . | fromYaml -}}
{{- $_ := set $md "keepWarm" "adaptive" -}}
{{- $_ := set $md "loadSeconds" (toString ($b.load_seconds | default 60)) -}}
{{- $_ := set $md "gpus" (toString $sc.gpus) -}}
{{- $_ := set $md "sloMissGpuSeconds" (toString $sc.slo_miss_gpu_s) -}}
{{- end -}}
{{- toYaml $md -}}
{{- end -}}

{{/* ---- the service matrix (config.yaml of the router and the scaler) --------------------- */}}
{{- define "pickspin.matrix" -}}
{{- $root := . -}}
{{- $models := list -}}
{{- range $m := .Values.models -}}
{{- $ctx := dict "root" $root "m" $m -}}
{{- $b := include "pickspin.backend" $ctx | fromYaml -}}
{{- $sc := include "pickspin.scaling" $ctx | fromYaml -}}
{{- $be := dict "name" $b.name "kind" (default "openai" $b.kind) "url" (include "pickspin.ksvcUrl" (dict "root" $root "name" $b.name)) "served_model_name" (default $m.name $b.served_model_name) "max_concurrency" (default (mul $sc.concurrency $sc.max_replicas) $b.max_concurrency) "health_path" $b.health_path "simulated" (default false $b.simulated) "expected_latency_s" (default 1.0 $b.expected_latency_s) "cold_start_s" $b.load_seconds -}}
{{- $models = append $models (dict "name" $m.name "tier" $m.tier "capability" $m.capability "cost" $m.cost "scaling" $sc "backends" (list $be)) -}}
{{- end -}}
{{- $routing := deepCopy (.Values.routing | default dict) -}}
{{- $sc0 := get $routing "scorer" | default dict -}}
{{- if and (not .Values.scorer.enabled) (ne (get $routing "mode" | default "keyword") "keyword") (not $sc0.url) (not $sc0.model_dir) -}}
{{- fail (printf "routing.mode %q needs the scorer: set scorer.enabled=true, routing.scorer.url, or routing.mode=keyword" (get $routing "mode")) -}}
{{- end -}}
{{- if .Values.scorer.enabled -}}
{{- $sr := deepCopy (get $routing "scorer" | default dict) -}}
{{- if not $sr.url -}}{{- $_ := set $sr "url" (include "pickspin.ksvcUrl" (dict "root" $root "name" (include "pickspin.scorerName" $root))) -}}{{- end -}}
{{- $_ := set $routing "scorer" $sr -}}
{{- end -}}
{{- $router := merge (deepCopy (.Values.router.settings | default dict)) (dict "active_probes" false) -}}
{{- if and .Values.scaler.enabled .Values.scaler.pushPort -}}
{{- /* the router pushes demand for cold models to every scaler replica (a headless Service) */ -}}
{{- $_ := set $router "scaler_push_url" (printf "http://%s-push.%s.svc.%s:%d" (include "pickspin.scalerName" .) .Release.Namespace (.Values.clusterDomain | default "cluster.local") (int .Values.scaler.pushPort)) -}}
{{- end -}}
{{- $matrix := dict "models" $models "routing" $routing "router" $router "tiers" .Values.tiers -}}
{{- if .Values.profiles -}}{{- $_ := set $matrix "profiles" .Values.profiles -}}{{- end -}}
{{- toYaml $matrix -}}
{{- end -}}


{{/* ---- router: hard concurrency limit (int). null: workers x (threads - 1); checked <= workers x threads */}}
{{- define "pickspin.routerConcurrency" -}}
{{- $r := .Values.router -}}
{{- $cap := mul $r.workers $r.threads -}}
{{- $cc := 0 -}}
{{- if kindIs "invalid" $r.containerConcurrency -}}
{{- $cc = max 1 (mul $r.workers (sub $r.threads 1)) -}}
{{- else -}}
{{- $cc = int $r.containerConcurrency -}}
{{- end -}}
{{- if or (lt $cc 1) (gt $cc $cap) -}}
{{- fail (printf "router.containerConcurrency=%d: must be between 1 and workers x threads = %d x %d = %d (0 = unlimited lets requests held for cold backends starve /healthz; leave it null for workers x (threads - 1))" $cc (int $r.workers) (int $r.threads) $cap) -}}
{{- end -}}
{{- $cc -}}
{{- end -}}

{{/* ---- backends: progress deadline (s) = image pull + model load + margin: (dict "root" $ "m" $m) */}}
{{- define "pickspin.progressDeadline" -}}
{{- $b := include "pickspin.backend" . | fromYaml -}}
{{- add (int $b.image_pull_seconds) (int $b.load_seconds) (int $b.progress_margin_seconds) -}}
{{- end -}}

{{/* ---- the timeout chain of one backend; fails with the broken link named: (dict "root" $ "m" $m) */}}
{{- define "pickspin.checkTimeouts" -}}
{{- $b := include "pickspin.backend" . | fromYaml -}}
{{- $r := .root.Values.router -}}
{{- $fb := int ((($r.settings | default dict).first_byte_timeout_s) | default 120) -}}
{{- $cold := add (int $b.image_pull_seconds) (int $b.load_seconds) -}}
{{- $rst := int $b.response_start_timeout_seconds -}}
{{- $to := int $b.timeout_seconds -}}
{{- $who := printf "model %s (backend %s)" .m.name $b.name -}}
{{- if not (lt $cold $fb) -}}
{{- fail (printf "timeout chain, %s: image_pull_seconds + load_seconds = %d must be < router.settings.first_byte_timeout_s = %d, or the first request after scale-from-zero always times out at the router" $who $cold $fb) -}}
{{- end -}}
{{- if not (lt $fb $rst) -}}
{{- fail (printf "timeout chain, %s: router.settings.first_byte_timeout_s = %d must be < response_start_timeout_seconds = %d, so the router gives up (and can retry elsewhere) before Knative cuts the request" $who $fb $rst) -}}
{{- end -}}
{{- if gt $rst $to -}}
{{- fail (printf "timeout chain, %s: response_start_timeout_seconds = %d must be <= timeout_seconds = %d" $who $rst $to) -}}
{{- end -}}
{{- if lt (sub $to $cold) (int $b.min_generation_seconds) -}}
{{- fail (printf "timeout chain, %s: timeout_seconds - (image_pull_seconds + load_seconds) = %d - %d = %d s left to generate after a cold start, below min_generation_seconds = %d" $who $to $cold (sub $to $cold) (int $b.min_generation_seconds)) -}}
{{- end -}}
{{- if lt (int $r.timeoutSeconds) $to -}}
{{- fail (printf "timeout chain, %s: router.timeoutSeconds = %d must be >= the backend's timeout_seconds = %d (the router's revision would cut a request the backend still serves)" $who (int $r.timeoutSeconds) $to) -}}
{{- end -}}
{{- if lt (int $r.responseStartTimeoutSeconds) $fb -}}
{{- fail (printf "timeout chain: router.responseStartTimeoutSeconds = %d must be >= router.settings.first_byte_timeout_s = %d" (int $r.responseStartTimeoutSeconds) $fb) -}}
{{- end -}}
{{- end -}}

{{/* ---- pod anti-affinity on hostname for a component: (dict "root" $ "component" "scaler" "mode" "soft") */}}
{{- define "pickspin.antiAffinity" -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "pickspin.selector" (dict "root" .root "component" .component) | fromYaml)) -}}
{{- if eq .mode "hard" -}}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - {{ toJson $term }}
{{- else -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm: {{ toJson $term }}
{{- end -}}
{{- end -}}
