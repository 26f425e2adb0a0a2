#!/usr/bin/env bash
# Builds the keyfort:latest image from examples/container/Containerfile: a release binary
# linked statically with glibc (crt-static, so the empty image needs no libc), plus the
# system's CA certificates. Needs the Rust toolchain and buildah (Debian: apt-get install
# buildah podman). Run from the repository root: examples/container/build.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
target="$(rustc -vV | sed -n 's/^host: //p')"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$target" --bin keyfort
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "${CARGO_TARGET_DIR:-target}/$target/release/keyfort" "$context/keyfort"
cp /etc/ssl/certs/ca-certificates.crt "$context/"
cp examples/container/Containerfile "$context/"
buildah bud --layers=false -t keyfort:latest "$context"
echo "built keyfort:latest; try: podman run --rm keyfort:latest --version"
