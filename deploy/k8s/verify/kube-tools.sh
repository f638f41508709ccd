#!/usr/bin/env bash
# The tools of `make k8s-verify`, built or unpacked once into _build/tools/ (a version bump builds anew):
# - etcd from Debian's etcd-server package (`apt-get download` + `dpkg-deb -x`: nothing is installed, no service
#   starts);
# - kube-apiserver and kubectl from the Go module proxy, through the wrapper module in kube-tools/ (k8s.io/kubernetes
#   at K8S_VERSION, its staging modules replaced by their published releases). About 15 minutes the first time on
#   two busy cores, niced and on one core; Go's build cache makes a rebuild a matter of a minute or two.
set -euo pipefail
cd "$(dirname "$0")/../../.."
source <(grep -E '^(K8S_VERSION|ETCD_DEBIAN_VERSION)=' deploy/local/versions.env)
TOOLS=$PWD/_build/tools

ETCD_DIR=$TOOLS/etcd-$ETCD_DEBIAN_VERSION
if [ ! -x "$ETCD_DIR/usr/bin/etcd" ]; then
  work=$(mktemp -d)
  ( cd "$work" && apt-get download "etcd-server=$ETCD_DEBIAN_VERSION" ) \
    || { echo "apt-get download etcd-server=$ETCD_DEBIAN_VERSION failed (run apt-get update first?)"; exit 1; }
  mkdir -p "$ETCD_DIR" && dpkg-deb -x "$work"/etcd-server_*.deb "$ETCD_DIR" && rm -rf "$work"
fi
echo "etcd: $ETCD_DIR/usr/bin/etcd ($("$ETCD_DIR/usr/bin/etcd" --version | head -1))"

KUBE_DIR=$TOOLS/kube-v$K8S_VERSION
if [ ! -x "$KUBE_DIR/kube-apiserver" ] || [ ! -x "$KUBE_DIR/kubectl" ]; then
  grep -q "^require k8s.io/kubernetes v$K8S_VERSION\$" deploy/k8s/verify/kube-tools/go.mod \
    || { echo "deploy/k8s/verify/kube-tools/go.mod does not require k8s.io/kubernetes v$K8S_VERSION: update it"; exit 1; }
  mkdir -p "$KUBE_DIR"
  echo "building kube-apiserver and kubectl v$K8S_VERSION (about 15 minutes the first time)"
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1"
  ldflags="$ldflags -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION"
  ( cd deploy/k8s/verify/kube-tools \
    && GOTOOLCHAIN=local GOFLAGS=-mod=mod GOMAXPROCS=1 nice -n 19 \
       go build -trimpath -ldflags="$ldflags" -o "$KUBE_DIR/" \
       k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl )
fi
echo "kube-apiserver: $KUBE_DIR/kube-apiserver"
echo "kubectl: $KUBE_DIR/kubectl ($("$KUBE_DIR/kubectl" version --client 2>/dev/null | head -1))"
