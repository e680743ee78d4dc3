#!/usr/bin/env bash
# Prints the path of a Vault binary built from integration/vaultdev, building it
# once and caching it in the user cache dir keyed by the Vault version.
# The first build takes 15-25 minutes and up to 5 GB of memory on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mod="$root/integration/vaultdev"
version=$(awk '$1=="require" && $2=="github.com/hashicorp/vault" {print $3}' "$mod/go.mod")
[ -n "$version" ] || { echo "vault-binary: cannot read the Vault version from $mod/go.mod" >&2; exit 1; }
cache="${XDG_CACHE_HOME:-$HOME/.cache}/clearance/vault-$version"
bin="$cache/vault"
if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then
  echo "$bin"; exit 0
fi
mkdir -p "$cache"
echo "vault-binary: building Vault $version into $bin (first time only: 15-25 minutes)" >&2
start=$(date +%s)
( cd "$mod" && GOFLAGS=-mod=mod go build -p 2 -trimpath -ldflags='-s -w' -o "$bin.tmp" . ) >&2
mv "$bin.tmp" "$bin"
echo "vault-binary: built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
