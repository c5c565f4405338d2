#!/usr/bin/env bash
# Build the Lambda@Edge function zip: dist/edge-function.zip with index.mjs (the Node.js
# shim), bootstrap (the Rust handler, x86_64, glibc 2.17) and config.json at its root.
#
# Usage: infra/package.sh --bucket NAME [--region R] [--endpoint-url URL]
#                         [--max-pixels N] [--max-bytes N] [--policy FILE] [--out FILE] [--skip-build]
# Each option falls back to an environment variable: IMGEDGE_BUCKET, IMGEDGE_REGION,
# IMGEDGE_ENDPOINT_URL, IMGEDGE_MAX_PIXELS, IMGEDGE_MAX_BYTES, IMGEDGE_POLICY_FILE, IMGEDGE_ZIP.
# --policy: a policy.json (DESIGN.md §10), checked first (node, the rules of edge/src/policy.rs)
# and copied into config.json as "policy"; a bad one stops here, naming the file and the entry.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="x86_64-unknown-linux-gnu.2.17"
LIMIT_BYTES=$((50 * 1024 * 1024)) # Lambda@Edge origin-request zip limit

bucket="${IMGEDGE_BUCKET:-}"
region="${IMGEDGE_REGION:-us-east-1}"
endpoint_url="${IMGEDGE_ENDPOINT_URL:-}"
max_pixels="${IMGEDGE_MAX_PIXELS:-50000000}"
max_bytes="${IMGEDGE_MAX_BYTES:-33554432}"
policy="${IMGEDGE_POLICY_FILE:-}"
out="${IMGEDGE_ZIP:-$ROOT/dist/edge-function.zip}"
skip_build=false

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
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
        --out) out="$2"; shift 2 ;;
        --skip-build) skip_build=true; shift ;;
        -h | --help) usage 0 ;;
        *) echo "unknown option: $1" >&2; usage 2 ;;
    esac
done

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

build_dir="${CARGO_TARGET_DIR:-$ROOT/target}/lambda"
bootstrap="$build_dir/bootstrap/bootstrap"

if [[ "$skip_build" == false ]]; then
    # cargo-lambda brings zig, which links against glibc 2.17 as Lambda needs.
    if ! command -v cargo-lambda >/dev/null 2>&1 || ! command -v nasm >/dev/null 2>&1; then
        # The project's pinned tool venv (scripts/tools.sh) has cargo-lambda and its zig;
        # nasm assembles rav1e's x86-64 code (the AVIF encoder).
        # shellcheck source=scripts/tools.sh
        . "$ROOT/scripts/tools.sh"
        imgedge_tools
        imgedge_nasm
    fi
    # The lean bootstrap: the core and the Lambda runtime only (no emulator, no CLI), and
    # no symbols — the zip's size is paid on every cold start in every region.
    (cd "$ROOT" && CARGO_PROFILE_RELEASE_STRIP=symbols CARGO_PROFILE_RELEASE_DEBUG=false \
        cargo lambda build --release --bin bootstrap --no-default-features --features lambda,avif-asm \
        --target "$TARGET" --lambda-dir "$build_dir")
fi
[[ -x "$bootstrap" ]] || { echo "no bootstrap at $bootstrap (build it first)" >&2; exit 1; }

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp "$ROOT/infra/edge-shim/index.mjs" "$stage/index.mjs"
cp "$bootstrap" "$stage/bootstrap"
chmod 0755 "$stage/bootstrap"
chmod 0644 "$stage/index.mjs"

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

mkdir -p "$(dirname "$out")"
rm -f "$out"
# Zip with stored Unix modes (bootstrap must stay executable); python's zipfile keeps them.
python3 - "$stage" "$out" <<'PY'
import os, sys, zipfile
stage, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    for name in ("index.mjs", "bootstrap", "config.json"):
        z.write(os.path.join(stage, name), name)
PY

size=$(stat -c %s "$out")
if ((size >= LIMIT_BYTES)); then
    echo "$out is $size bytes: over the 50 MB Lambda@Edge limit" >&2
    exit 1
fi
echo "$out: $size bytes ($((size * 100 / LIMIT_BYTES))% of the 50 MB limit); bootstrap $(stat -c %s "$bootstrap") bytes unzipped"
