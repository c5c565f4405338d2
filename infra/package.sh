#!/usr/bin/env bash
# Build a function zip. Edge mode (default): dist/edge-function.zip, the Lambda@Edge function:
# index.mjs (the Node.js shim), bootstrap (the Rust handler, x86_64, glibc 2.17) and
# config.json at its root. Regional mode: dist/regional-function.zip, the regional function
# (provided.al2023): the Rust `regional` binary as bootstrap at its root, nothing else (its
# settings are its environment, set by the template).
#
# Usage: infra/package.sh --bucket NAME [--region R] [--endpoint-url URL]
#                         [--max-pixels N] [--max-bytes N] [--policy FILE] [--out FILE] [--skip-build]
#        infra/package.sh --mode regional [--arch arm64|x86_64] [--out FILE] [--skip-build]
# Each option falls back to an environment variable: IMGEDGE_BUCKET, IMGEDGE_REGION,
# IMGEDGE_ENDPOINT_URL, IMGEDGE_MAX_PIXELS, IMGEDGE_MAX_BYTES, IMGEDGE_POLICY_FILE, IMGEDGE_ZIP,
# IMGEDGE_MODE, IMGEDGE_ARCH.
# --policy: a policy.json (DESIGN.md §10), checked first (node, the rules of edge/src/policy.rs)
# and copied into config.json as "policy"; a bad one stops here, naming the file and the entry.
# --arch arm64 (the default) cross-compiles with Debian's rustc-web and its arm64 standard
# library (scripts/tools.sh imgedge_arm64); x86_64 builds with cargo-lambda like the edge zip.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="x86_64-unknown-linux-gnu.2.17"
ARM64_TARGET="aarch64-unknown-linux-gnu"
LIMIT_BYTES=$((50 * 1024 * 1024)) # the zip limit of Lambda@Edge and of a direct Lambda upload

bucket="${IMGEDGE_BUCKET:-}"
region="${IMGEDGE_REGION:-us-east-1}"
endpoint_url="${IMGEDGE_ENDPOINT_URL:-}"
max_pixels="${IMGEDGE_MAX_PIXELS:-50000000}"
max_bytes="${IMGEDGE_MAX_BYTES:-33554432}"
policy="${IMGEDGE_POLICY_FILE:-}"
mode="${IMGEDGE_MODE:-edge}"
arch="${IMGEDGE_ARCH:-arm64}"
out="${IMGEDGE_ZIP:-}"
skip_build=false

usage() {
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --bucket) bucket="$2"; shift 2 ;;
        --region) region="$2"; shift 2 ;;
        --endpoint-url) endpoint_url="$2"; shift 2 ;;
        --max-pixels) max_pixels="$2"; shift 2 ;;
        --max-bytes) max_bytes="$2"; shift 2 ;;
        --policy) policy="$2"; shift 2 ;;
        --mode) mode="$2"; shift 2 ;;
        --arch) arch="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --skip-build) skip_build=true; shift ;;
        -h | --help) usage 0 ;;
        *) echo "unknown option: $1" >&2; usage 2 ;;
    esac
done

case "$mode" in
    edge) out="${out:-$ROOT/dist/edge-function.zip}" ;;
    regional) out="${out:-$ROOT/dist/regional-function.zip}" ;;
    *) echo "--mode must be edge or regional, got '$mode'" >&2; exit 2 ;;
esac
if [[ "$mode" == regional ]]; then
    [[ "$arch" == arm64 || "$arch" == x86_64 ]] || { echo "--arch must be arm64 or x86_64, got '$arch'" >&2; exit 2; }
    [[ -z "$policy" && -z "$bucket" ]] ||
        echo "note: the regional zip holds no settings; the bucket, limits and policy are the function's environment (deploy.sh passes them to the template)" >&2
else
    [[ -n "$bucket" ]] || { echo "--bucket (or IMGEDGE_BUCKET) is required" >&2; exit 2; }
    for n in "$max_pixels" "$max_bytes"; do
        [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "limits must be positive integers, got '$n'" >&2; exit 2; }
    done
    # The policy is checked before the (slow) build, by the same code that bakes it into the
    # CloudFront Function (build.mjs --check: the rules of edge/src/policy.rs, shared fixture).
    if [[ -n "$policy" ]]; then
        [[ -f "$policy" && -r "$policy" ]] || { echo "policy $policy: no such readable file" >&2; exit 2; }
        command -v node >/dev/null 2>&1 || { echo "node (>= 20) is needed to check the policy $policy" >&2; exit 1; }
        node "$ROOT/infra/cloudfront-function/build.mjs" --check --policy "$policy" >/dev/null ||
            { echo "policy $policy is not usable (see above); nothing was packaged" >&2; exit 1; }
    fi
fi

target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
build_dir="$target_dir/lambda"
# The lean binaries: the core and a Lambda runtime only (no emulator, no CLI), and no
# symbols — the zip's size is paid on every cold start.
lean=(CARGO_PROFILE_RELEASE_STRIP=symbols CARGO_PROFILE_RELEASE_DEBUG=false)
ensure_cargo_lambda() {
    # cargo-lambda brings zig, which links against an old glibc as Lambda needs.
    if ! command -v cargo-lambda >/dev/null 2>&1 || ! command -v nasm >/dev/null 2>&1; then
        # The project's pinned tool venv (scripts/tools.sh) has cargo-lambda and its zig;
        # nasm assembles rav1e's x86-64 code (the AVIF encoder).
        # shellcheck source=scripts/tools.sh
        . "$ROOT/scripts/tools.sh"
        imgedge_tools
        imgedge_nasm
    fi
}
# x86_64 with cargo-lambda: the binary $1 with the feature $2, as $build_dir/$1/bootstrap.
lambda_build() {
    bin="$build_dir/$1/bootstrap"
    [[ "$skip_build" == false ]] || return 0
    ensure_cargo_lambda
    (cd "$ROOT" && env "${lean[@]}" cargo lambda build --release --bin "$1" --no-default-features --features "$2" \
        --target "$TARGET" --lambda-dir "$build_dir")
}
if [[ "$mode" == edge ]]; then
    lambda_build bootstrap lambda,avif-asm
elif [[ "$arch" == x86_64 ]]; then
    lambda_build regional regional,avif-asm
else
    # rustup cannot add targets here; Debian's rustc-web has an arm64 standard library
    # (libstd-rust-web-dev:arm64) and a cross linker (scripts/tools.sh imgedge_arm64).
    bin="$target_dir/$ARM64_TARGET/release/regional"
    if [[ "$skip_build" == false ]]; then
        # shellcheck source=scripts/tools.sh
        . "$ROOT/scripts/tools.sh"
        imgedge_arm64
        (cd "$ROOT" && env "${lean[@]}" "${IMGEDGE_ARM64_ENV[@]}" "$IMGEDGE_ARM64_CARGO" build --release --locked \
            --target "$ARM64_TARGET" --bin regional --no-default-features --features regional,avif-asm)
    fi
fi
[[ -x "$bin" ]] || { echo "no $bin (build it first)" >&2; exit 1; }
# Lambda's provided.al2023 and nodejs22.x run on Amazon Linux 2023, whose glibc is 2.34: a
# binary that needs a newer symbol version would fail at its first start, in AWS only.
needed=$({ readelf --version-info --wide "$bin" 2>/dev/null || true; } | { grep -o 'GLIBC_[0-9][0-9.]*' || true; } | sed 's/GLIBC_//' | sort -uV | tail -n 1)
if [[ -n "$needed" && "$(printf '%s\n2.34\n' "$needed" | sort -V | tail -n 1)" != 2.34 ]]; then
    echo "$bin needs glibc $needed; Lambda (Amazon Linux 2023) has 2.34" >&2
    exit 1
fi

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp "$bin" "$stage/bootstrap"
chmod 0755 "$stage/bootstrap"
files=(bootstrap)
if [[ "$mode" == edge ]]; then
    cp "$ROOT/infra/edge-shim/index.mjs" "$stage/index.mjs"
    chmod 0644 "$stage/index.mjs"
    files=(index.mjs bootstrap config.json)

    # config.json: JSON built by python so odd characters in values are escaped correctly; the
    # policy goes in as the object the file holds ("policy", read by the Rust side at start).
    BUCKET="$bucket" REGION="$region" ENDPOINT_URL="$endpoint_url" \
        MAX_PIXELS="$max_pixels" MAX_BYTES="$max_bytes" POLICY="$policy" python3 - "$stage/config.json" <<'PY'
import json, os, sys
config = {
    "bucket": os.environ["BUCKET"],
    "region": os.environ["REGION"],
    "endpoint_url": os.environ["ENDPOINT_URL"] or None,
    "max_pixels": int(os.environ["MAX_PIXELS"]),
    "max_bytes": int(os.environ["MAX_BYTES"]),
}
if os.environ["POLICY"]:
    def not_json(name):
        raise ValueError(f"{name} is not JSON")
    try:
        with open(os.environ["POLICY"], encoding="utf-8") as f:
            policy = json.load(f, parse_constant=not_json)
    except (OSError, ValueError) as e:
        sys.exit(f"policy {os.environ['POLICY']}: {e}; nothing was packaged")
    if not isinstance(policy, dict):
        sys.exit(f"policy {os.environ['POLICY']}: a policy is a JSON object; nothing was packaged")
    config["policy"] = policy
with open(sys.argv[1], "w", encoding="utf-8") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
PY
    chmod 0644 "$stage/config.json"
fi

mkdir -p "$(dirname "$out")"
rm -f "$out"
# Zip with stored Unix modes (bootstrap must stay executable); python's zipfile keeps them.
python3 - "$stage" "$out" "${files[@]}" <<'PY'
import os, sys, zipfile
stage, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    for name in names:
        z.write(os.path.join(stage, name), name)
PY

size=$(stat -c %s "$out")
what="Lambda@Edge"
[[ "$mode" == edge ]] || what="Lambda ($arch)"
if ((size >= LIMIT_BYTES)); then
    echo "$out is $size bytes: over the 50 MB $what zip limit" >&2
    exit 1
fi
echo "$out: $size bytes ($((size * 100 / LIMIT_BYTES))% of the 50 MB $what limit); bootstrap $(stat -c %s "$bin") bytes unzipped, needs glibc ${needed:-(none)}"
