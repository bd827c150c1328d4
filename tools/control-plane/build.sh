#!/usr/bin/env bash
# Builds the control plane's binaries once into a cache outside the checkout and prints its folder.
# A second run finds them there and returns at once. The folder's name carries the pinned versions
# (read from go.mod) and a hash of go.mod and go.sum, so a pin change builds into a new folder.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
k8s=$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' go.mod)
etcd=$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2; exit}' go.mod)
digest=$(cat go.mod go.sum | sha256sum | cut -c1-12)
cache_root="${SDXL_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sdxl-operator/control-plane}"
out="$cache_root/kubernetes-$k8s-etcd-$etcd-$digest"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)
missing=()
for b in "${binaries[@]}"; do [ -x "$out/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -eq 0 ]; then echo "$out"; exit 0; fi

mkdir -p "$out.partial"
start=$(date +%s)
export CGO_ENABLED=0 GOFLAGS=-mod=readonly
# Stamp the release into the binaries as Kubernetes' own build does: kubectl, helm and the
# discovery endpoint read it (an unstamped build calls itself v0.0.0-master).
minor=$(echo "$k8s" | cut -d. -f2)
ldflags="-s"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
for b in "${missing[@]}"; do
  case "$b" in
    etcd) pkg=./etcd ;;
    *) pkg=k8s.io/kubernetes/cmd/$b ;;
  esac
  echo "building $b ($pkg)" >&2
  go build -trimpath -ldflags="$ldflags" -o "$out.partial/$b" "$pkg"
done
mkdir -p "$out"
for b in "${missing[@]}"; do mv "$out.partial/$b" "$out/$b"; done
rmdir "$out.partial" 2>/dev/null || true
echo "built ${missing[*]} in $(( $(date +%s) - start )) s into $out" >&2
echo "$out"
