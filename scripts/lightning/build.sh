#!/usr/bin/env bash
# Builds btcd, btcctl, lnd and lncli from the Go module proxy into a cache outside the repo.
# Output: prints the bin directory on the last line of stdout (BIN_DIR=...).
# Re-uses the cache when all four binaries are present. Progress goes to stderr.
set -euo pipefail

LND_VERSION="${LND_VERSION:-v0.21.2-beta}"
LND_COMMIT_HASH="${LND_COMMIT_HASH:-29257ecc8892af0c882fa627b66a556190c84fd9}"
LND_TAGS="${LND_TAGS:-signrpc walletrpc chainrpc invoicesrpc peersrpc autopilotrpc watchtowerrpc neutrinorpc}"
CACHE_ROOT="${SWITCHYARD_CACHE_DIR:-$HOME/.cache/switchyard}"

tags_hash="$(printf '%s' "$LND_TAGS" | sha256sum | cut -c1-12)"
key="lnd-${LND_VERSION}-${tags_hash}"
bin_dir="$CACHE_ROOT/bin/$key"
src_dir="$CACHE_ROOT/src/lnd-${LND_VERSION}"

log() { printf '[lightning-build] %s\n' "$*" >&2; }

if [[ -x "$bin_dir/lnd" && -x "$bin_dir/lncli" && -x "$bin_dir/btcd" && -x "$bin_dir/btcctl" ]]; then
  log "cache hit: $bin_dir"
  echo "BIN_DIR=$bin_dir"
  exit 0
fi

if ! command -v go >/dev/null; then
  for candidate in /usr/local/go/bin /usr/lib/go/bin "$HOME/go/bin" "$HOME/sdk/go/bin"; do
    if [[ -x "$candidate/go" ]]; then export PATH="$candidate:$PATH"; break; fi
  done
fi
command -v go >/dev/null || { log "go is not on PATH (nor in /usr/local/go/bin)"; exit 2; }
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
start=$(date +%s)

if [[ ! -f "$src_dir/go.mod" ]]; then
  log "downloading github.com/lightningnetwork/lnd@$LND_VERSION from the module proxy"
  mod_dir="$(go mod download -json "github.com/lightningnetwork/lnd@$LND_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -d "$mod_dir" ]] || { log "module download failed"; exit 3; }
  tmp_src="$src_dir.tmp.$$"
  rm -rf "$tmp_src"; mkdir -p "$(dirname "$src_dir")"
  cp -r "$mod_dir" "$tmp_src"; chmod -R u+w "$tmp_src"
  mv "$tmp_src" "$src_dir"
fi
cd "$src_dir"
log "downloading dependencies (go mod download)"
go mod download

tmp_bin="$bin_dir.tmp.$$"
rm -rf "$tmp_bin"; mkdir -p "$tmp_bin"

# Progress: go build -v prints each package as it is compiled; count them.
build() {
  local name="$1"; shift
  log "building $name ..."
  local n=0
  go build -v -trimpath "$@" 2>&1 | while IFS= read -r line; do
    n=$((n + 1))
    if (( n % 25 == 0 )); then log "  $name: $n packages compiled (last: $line)"; fi
    case "$line" in *.go:*|*": "*) printf '%s\n' "$line" >&2 ;; esac
  done
  [[ ${PIPESTATUS[0]} -eq 0 ]] || { log "$name build failed"; return 1; }
  log "  $name done after $(( $(date +%s) - start ))s total"
}

ldflags="-s -w -X github.com/lightningnetwork/lnd/build.Commit=$LND_VERSION -X github.com/lightningnetwork/lnd/build.CommitHash=$LND_COMMIT_HASH"
build btcd   -o "$tmp_bin/btcd"   -ldflags "-s -w" github.com/btcsuite/btcd
build btcctl -o "$tmp_bin/btcctl" -ldflags "-s -w" github.com/btcsuite/btcd/cmd/btcctl
build lncli  -o "$tmp_bin/lncli"  -tags "$LND_TAGS" -ldflags "$ldflags" ./cmd/lncli
build lnd    -o "$tmp_bin/lnd"    -tags "$LND_TAGS" -ldflags "$ldflags" ./cmd/lnd

rm -rf "$bin_dir"; mv "$tmp_bin" "$bin_dir"
printf '%s\n%s\n' "$LND_VERSION" "$LND_TAGS" > "$bin_dir/BUILD_INFO"
log "built in $(( $(date +%s) - start ))s: $bin_dir"
echo "BIN_DIR=$bin_dir"
