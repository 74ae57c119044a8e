#!/usr/bin/env bash
# Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and helm
# from the Go module proxy, into a cache outside the repo keyed by version.
#
# No registry ships the Kubernetes server binaries, so we build them from source with a
# wrapper module: it requires k8s.io/kubernetes and replaces every k8s.io/* staging module
# (listed at v0.0.0 upstream) with its published v0.X.Y tag.
set -euo pipefail

K8S_VERSION="${STEMGEN_K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${STEMGEN_ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${STEMGEN_HELM_VERSION:-v3.19.5}"
CACHE_ROOT="${STEMGEN_CACHE:-$HOME/.cache/stemgen}"
BIN_DIR="$CACHE_ROOT/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
WORK_DIR="$CACHE_ROOT/build"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

step() { echo "==> [build-control-plane] $*" >&2; }
fail() { echo "!! [build-control-plane] step failed: $1" >&2; exit 1; }

if [[ -x "$BIN_DIR/kube-apiserver" && -x "$BIN_DIR/kube-controller-manager" && -x "$BIN_DIR/kube-scheduler" \
   && -x "$BIN_DIR/kubectl" && -x "$BIN_DIR/etcd" && -x "$BIN_DIR/helm" \
   && "$(cat "$BIN_DIR/.helm-recipe" 2>/dev/null)" == "$HELM_VERSION k8s $K8S_VERSION" ]]; then
  echo "$BIN_DIR"
  exit 0
fi
command -v go >/dev/null || fail "go toolchain not found on PATH (install Go >= 1.24)"
mkdir -p "$BIN_DIR" "$WORK_DIR"
# Parallel test sessions may all find the cache cold: one builds, the others wait for it.
exec 9>"$CACHE_ROOT/build.lock"
flock 9

minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"; patch="${K8S_VERSION##*.}"
staging_version="v0.$minor.$patch"

build_kubernetes() {
  local dir="$WORK_DIR/kubernetes-$K8S_VERSION"
  mkdir -p "$dir" && cd "$dir"
  if [[ ! -f go.mod ]]; then
    step "kubernetes: init wrapper module"
    go mod init stemgen.local/k8s-build >/dev/null 2>&1 || fail "go mod init (kubernetes wrapper)"
  fi
  step "kubernetes: download upstream go.mod for $K8S_VERSION"
  local upstream_mod
  upstream_mod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')" \
    || fail "go mod download k8s.io/kubernetes@$K8S_VERSION (is the Go module proxy reachable?)"
  step "kubernetes: replace staging modules with $staging_version"
  local staged
  staged="$(grep -E '^\s*k8s\.io/[a-z0-9./-]+ v0\.0\.0\s*(//.*)?$' "$upstream_mod" | awk '{print $1}' | sort -u)"
  [[ -n "$staged" ]] || fail "no v0.0.0 staging modules found in upstream go.mod"
  local args=()
  for module in $staged; do args+=("-replace=$module=$module@$staging_version"); done
  go mod edit "${args[@]}" || fail "go mod edit -replace"
  step "kubernetes: go get k8s.io/kubernetes@$K8S_VERSION"
  # Every package needs the explicit version: a bare package path means "latest".
  go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kube-scheduler@$K8S_VERSION" "k8s.io/kubernetes/cmd/kubectl@$K8S_VERSION" >/dev/null \
    || fail "go get k8s.io/kubernetes@$K8S_VERSION (see the go error above)"
  local pkg="k8s.io/component-base/version"
  local ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor \
    -X $pkg.gitTreeState=clean -X $pkg.gitCommit=module-proxy-$K8S_VERSION -X $pkg.buildDate=1970-01-01T00:00:00Z \
    -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 \
    -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    if [[ ! -x "$BIN_DIR/$cmd" ]]; then
      step "kubernetes: go build $cmd (several minutes on 2 cores)"
      go build -tags selinux,notest -trimpath -ldflags "$ldflags" -o "$BIN_DIR/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" \
        || fail "go build $cmd"
      mv "$BIN_DIR/$cmd.tmp" "$BIN_DIR/$cmd"
    fi
  done
}

build_etcd() {
  [[ -x "$BIN_DIR/etcd" ]] && return 0
  local dir="$WORK_DIR/etcd-$ETCD_VERSION"
  mkdir -p "$dir" && cd "$dir"
  [[ -f go.mod ]] || go mod init stemgen.local/etcd-build >/dev/null 2>&1 || fail "go mod init (etcd wrapper)"
  step "etcd: go get go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null || fail "go get etcd server $ETCD_VERSION"
  step "etcd: go build"
  go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd.tmp" go.etcd.io/etcd/server/v3 || fail "go build etcd"
  mv "$BIN_DIR/etcd.tmp" "$BIN_DIR/etcd"
}

build_helm() {
  # helm's default Kubernetes version (for `helm template` capabilities) is set by ldflags upstream.
  local recipe="$HELM_VERSION k8s $K8S_VERSION"
  [[ -x "$BIN_DIR/helm" && "$(cat "$BIN_DIR/.helm-recipe" 2>/dev/null)" == "$recipe" ]] && return 0
  local dir="$WORK_DIR/helm-$HELM_VERSION"
  mkdir -p "$dir" && cd "$dir"
  [[ -f go.mod ]] || go mod init stemgen.local/helm-build >/dev/null 2>&1 || fail "go mod init (helm wrapper)"
  step "helm: go get helm.sh/helm/v3@$HELM_VERSION"
  go get "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >/dev/null || fail "go get helm $HELM_VERSION"
  step "helm: go build"
  go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
    -o "$BIN_DIR/helm.tmp" helm.sh/helm/v3/cmd/helm || fail "go build helm"
  mv "$BIN_DIR/helm.tmp" "$BIN_DIR/helm"
  echo "$recipe" > "$BIN_DIR/.helm-recipe"
}

build_etcd
build_kubernetes
build_helm
step "binaries ready in $BIN_DIR"
echo "$BIN_DIR"
