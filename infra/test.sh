#!/usr/bin/env bash
# Every offline check of infra/ (DESIGN.md §7), quick enough for each test run, for both modes
# of the template (edge: Lambda@Edge; regional: a Lambda behind a Function URL):
#   cfn-lint (0 errors, 0 warnings) on the template and on the template as deploy.sh renders it
#   in each mode, policy rules (infra/policy) in each mode incl. their tests on broken copies,
#   ShellCheck on every shell script of the repository,
#   the CloudFront Functions' package step and node tests (shared fixtures),
#   deploy.sh --dry-run call sequences and error messages, package.sh's config.json,
#   docs/operations.md's Logs Insights queries against the log line contract.
#
#   infra/test.sh           all of the above
#   infra/test.sh --moto    also deploy.sh against a local moto server (slow: ~1 min)
#
# Tools come from the project's one pinned venv (scripts/tools.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MOTO=0
for arg in "$@"; do
  case "$arg" in
    --moto) MOTO=1 ;;
    -h | --help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "infra/test.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

# One pinned tool venv for every script of the project (scripts/tools.sh).
# shellcheck source=scripts/tools.sh
. "$ROOT/scripts/tools.sh"
imgedge_tools
command -v node >/dev/null || { echo "infra/test.sh: node (>= 20) is needed for the CloudFront Function tests" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

failed=()
step() {
  local name=$1 start=$SECONDS
  shift
  echo "── $name"
  if "$@"; then
    echo "   ok ($((SECONDS - start)) s)"
  else
    echo "   FAILED: $name"
    failed+=("$name")
  fi
}

# Tracked or new (not ignored) files that are shell scripts: *.sh or a sh/bash shebang.
shell_scripts() {
  cd "$ROOT"
  local list=(git ls-files --cached --others --exclude-standard -z)
  # Outside a git checkout (an exported tarball), every file but build output and deps.
  git rev-parse --git-dir >/dev/null 2>&1 ||
    list=(find . -type f -not -path './target/*' -not -path '*/node_modules/*' -not -path './.git/*' -printf '%P\0')
  "${list[@]}" | while IFS= read -r -d '' f; do
    [[ -f "$f" ]] || continue
    if [[ "$f" == *.sh ]] || head -n1 "$f" 2>/dev/null | grep -Eq '^#!.*[/ ](ba)?sh( |$)'; then
      printf '%s\n' "$f"
    fi
  done
}

run_shellcheck() {
  local scripts
  mapfile -t scripts < <(shell_scripts)
  echo "   ${#scripts[@]} scripts: ${scripts[*]}"
  ((${#scripts[@]})) && (cd "$ROOT" && shellcheck -x "${scripts[@]}")
}

RENDERED="$WORK/template.rendered.yaml"
RENDERED_REGIONAL="$WORK/template.regional.yaml"
# The package step's minifier (terser, pinned in package-lock.json), for build.mjs and its tests.
function_deps() {
  [[ -d "$ROOT/infra/cloudfront-function/node_modules/terser" ]] ||
    (cd "$ROOT/infra/cloudfront-function" && npm ci --no-audit --no-fund --loglevel=error)
}
step "CloudFront Function build deps (npm ci)" function_deps
step "CloudFront Functions package (build.mjs: minified, < 10 KB each)" node "$ROOT/infra/cloudfront-function/build.mjs" --out "$WORK/cloudfront-function"
step "CloudFront Functions package, regional mode" node "$ROOT/infra/cloudfront-function/build.mjs" --mode regional --out "$WORK/cloudfront-function-regional"
# What deploy.sh inlines: the minified builds, not the sources.
built() {
  BUILT=(--function "$WORK/$1/viewer-request.js" --response-function "$WORK/$1/viewer-response.js"
    --function-source "$ROOT/infra/cloudfront-function/viewer-request.js")
}

# Rendered as the checks' own builds above were made: no policy, whatever the caller's shell has.
step "render the template (deploy.sh render)" env IMGEDGE_POLICY_FILE= IMGEDGE_MODE= bash "$ROOT/infra/deploy.sh" render "$RENDERED"
step "render the template in regional mode (deploy.sh render --mode regional)" env IMGEDGE_POLICY_FILE= bash "$ROOT/infra/deploy.sh" render --mode regional "$RENDERED_REGIONAL"
step "cfn-lint: 0 errors, 0 warnings" cfn-lint -- "$ROOT/infra/template.yaml" "$RENDERED" "$RENDERED_REGIONAL"
built cloudfront-function
step "policy rules on the template (both modes)" python "$ROOT/infra/policy/check_template.py" "$ROOT/infra/template.yaml" "${BUILT[@]}"
step "policy rules on the rendered template (edge)" python "$ROOT/infra/policy/check_template.py" "$RENDERED" --mode edge "${BUILT[@]}"
built cloudfront-function-regional
step "policy rules on the rendered template (regional)" python "$ROOT/infra/policy/check_template.py" "$RENDERED_REGIONAL" --mode regional "${BUILT[@]}"
step "policy rule tests (broken copies must fail)" python -m unittest discover -s "$ROOT/infra/policy" -t "$ROOT/infra/policy"
step "shellcheck" run_shellcheck
step "CloudFront Function node tests" node --test "$ROOT/infra/cloudfront-function/"
step "infra/tests: deploy.sh dry run and errors, package.sh, operations doc queries" env IMGEDGE_AWS_CLI="$IMGEDGE_VENV/bin/aws" IMGEDGE_TEST_MOTO="$MOTO" \
  python -m unittest discover -s "$ROOT/infra/tests" -t "$ROOT/infra/tests"

if ((${#failed[@]})); then
  printf 'infra/test.sh: %d step(s) failed:\n' "${#failed[@]}"
  printf '  - %s\n' "${failed[@]}"
  exit 1
fi
echo "infra/test.sh: all infra checks passed"
