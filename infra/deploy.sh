#!/usr/bin/env bash
# Before anything bash-only, in plain sh, so an old bash (macOS ships 3.2) or another shell
# reaches a clear message instead of a syntax error or, worse, a half-run deploy.
# Needs 4.4: ${x,,} and empty "${arr[@]}" under set -u (an error before 4.4).
case "${BASH_VERSION-}" in
  '' | [0-3].* | 4.[0-3].*)
    printf 'deploy.sh: needs bash 4.4 or newer (this is %s); run it as "bash infra/deploy.sh" with a newer bash (macOS: brew install bash)\n' "${BASH_VERSION:-not bash}" >&2
    exit 1
    ;;
esac

# Deploy imgedge to AWS: S3 bucket + CloudFront (OAC) + CloudFront Functions + the function that
# builds variants (Lambda@Edge, or in regional mode a Lambda behind a Function URL), all from
# infra/template.yaml in us-east-1. See docs/deploy.md.
#
#   infra/deploy.sh [--dry-run] deploy [--mode edge|regional] [--arch arm64|x86_64] [--policy FILE]
#                                      [--signing-keys FILE|none] [--alarm-topic ARN]
#                                                  build the function zip, upload it, deploy the stack
#   infra/deploy.sh [--dry-run] signing-keys FILE|none
#                                                  only set the signing keys (rotation; no redeploy)
#   infra/deploy.sh [--dry-run] invalidate PATH... invalidate cached URLs (e.g. '/outputs/*')
#   infra/deploy.sh [--dry-run] outputs            print the stack's outputs (URLs, ids)
#   infra/deploy.sh [--dry-run] [--yes] destroy    delete the stack after listing it and asking
#                                                  (waits out Lambda@Edge replicas); --yes: don't ask
#   infra/deploy.sh render [--mode M] [--policy FILE] [FILE]
#                                                  write the template with the CloudFront Functions inlined
#
# --mode edge (default): variants are built by an origin-request Lambda@Edge (Node shim around the
#   Rust bootstrap, x86_64). --mode regional: by an ordinary Lambda (provided.al2023) behind a
#   Function URL that CloudFront falls back to when the bucket has no such variant; --arch picks its
#   instruction set (arm64 default). Part of each deploy, like --policy (docs/deploy.md#modes).
# --policy FILE: a policy.json (allowed widths, formats, …, presets; docs/url-api.md), checked
#   first, baked into the viewer-request function and put into the Lambda's config.json. Part of
#   each deploy: without it (or IMGEDGE_POLICY_FILE) the stack is deployed with no policy.
# --signing-keys FILE: a keys file (one hex secret per line, >= 32 hex digits, '#' comments; at
#   most 1 KB), checked first, then put into the stack's KeyValueStore after the deploy: every
#   URL with a query must then be signed. none: delete the keys, signing off. The keys stay
#   until changed (a deploy without the option leaves them); no secret is ever printed.
# --alarm-topic ARN: an SNS topic in us-east-1 that the stack's alarms notify (ALARM and OK;
#   docs/operations.md). Part of each deploy, like the settings below: without it (or
#   IMGEDGE_ALARM_TOPIC) the alarms have no actions.
#
# --dry-run prints every AWS CLI call (one line each, starting with "+ aws") instead of running
# it, and needs no AWS CLI, credentials, region or config; values that would come from AWS are
# shown as placeholders. Every call goes to us-east-1 (Lambda@Edge and CloudFront certificates
# live only there), whatever AWS_REGION says. Settings (environment):
#   IMGEDGE_STACK=imgedge              stack name, prefix of every resource name
#   IMGEDGE_BUCKET                     image bucket (default <stack>-images-<account id>)
#   IMGEDGE_ARTIFACT_BUCKET            bucket for the function zip (default <stack>-artifacts-<account id>)
#   IMGEDGE_PRICE_CLASS=PriceClass_100 IMGEDGE_MEMORY_MB=1536 IMGEDGE_TIMEOUT_S=30
#   IMGEDGE_VARIANTS_EXPIRATION_DAYS=90 IMGEDGE_VERSIONING=false
#   IMGEDGE_DOMAINS=a.example.com,b.example.com  IMGEDGE_CERT_ARN=arn:aws:acm:us-east-1:…
#   IMGEDGE_MAX_PIXELS, IMGEDGE_MAX_BYTES  limits: config.json (edge) or the function's environment (regional)
#   IMGEDGE_MODE=edge IMGEDGE_ARCH=arm64  the --mode and --arch when the options are not given
#   IMGEDGE_POLICY_FILE                the --policy file when the option is not given
#   IMGEDGE_ALARM_TOPIC                the --alarm-topic ARN when the option is not given
#   IMGEDGE_ZIP                        use this prebuilt zip instead of running infra/package.sh
#   IMGEDGE_DESTROY_RETRY_MINUTES=15 IMGEDGE_DESTROY_ATTEMPTS=16  destroy's wait for replicas
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIST="$ROOT/dist"
TEMPLATE="$ROOT/infra/template.yaml"
REQUIRED_REGION=us-east-1

DRY_RUN=0
ASSUME_YES=0
MODE="${IMGEDGE_MODE:-edge}"
ARCH="${IMGEDGE_ARCH:-arm64}"
POLICY_FILE="${IMGEDGE_POLICY_FILE:-}"
ALARM_TOPIC="${IMGEDGE_ALARM_TOPIC:-}"
# The template's AllowedPattern for AlarmTopicArn: a standard SNS topic in the alarms' Region.
ALARM_TOPIC_PATTERN='^arn:aws[a-z-]*:sns:us-east-1:[0-9]{12}:[A-Za-z0-9_-]{1,256}$'
SIGNING_KEYS=""    # a keys file, "none", or empty: leave the KeyValueStore as it is
SIGNING_KEYS_NAME=signing-keys # the KeyValueStore key the viewer-request function reads
KVS_VALUE_LIMIT=1024           # bytes in one CloudFront KeyValueStore value
REGION=$REQUIRED_REGION
STACK="${IMGEDGE_STACK:-imgedge}"

die() {
  printf 'deploy.sh: %s\n' "$*" >&2
  exit 1
}

say() {
  printf '%s\n' "$*" >&2
}

usage() {
  sed -n '/^# Deploy imgedge/,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

# Print a command the way a shell would read it back.
show() {
  local out="+" arg
  for arg in "$@"; do
    out+=" $(printf '%q' "$arg")"
  done
  printf '%s\n' "$out" >&3
}

# Run an AWS CLI call, or print it under --dry-run.
aws_run() {
  if ((DRY_RUN)); then
    show aws "$@" --region "$REGION"
    return 0
  fi
  aws "$@" --region "$REGION"
}

# An AWS CLI call whose text output is needed; under --dry-run print it and answer $1.
aws_text() {
  local placeholder=$1
  shift
  if ((DRY_RUN)); then
    show aws "$@" --region "$REGION" --output text
    printf '%s\n' "$placeholder"
    return 0
  fi
  aws "$@" --region "$REGION" --output text
}

# The stack is pinned to us-east-1; a different region in the environment (a default for
# other work) is not an error, but say that it is not used.
note_region() {
  local env_region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
  if [[ -n "$env_region" && "$env_region" != "$REQUIRED_REGION" ]]; then
    say "note: the imgedge stack lives in $REQUIRED_REGION (Lambda@Edge and CloudFront certificates); every call here uses --region $REQUIRED_REGION, not $env_region"
  fi
}

# Fail early, with the fix, when the AWS CLI or credentials are missing.
preflight() {
  note_region
  if ((!DRY_RUN)); then
    command -v aws >/dev/null 2>&1 || die "the AWS CLI ('aws') is not installed: 'pip install awscli' or see https://docs.aws.amazon.com/cli/"
  fi
  local errors
  errors=$(mktemp)
  if ! ACCOUNT=$(aws_text 123456789012 sts get-caller-identity --query Account 2>"$errors"); then
    local why
    why=$(tr '\n' ' ' <"$errors")
    rm -f "$errors"
    die "no usable AWS credentials ('aws sts get-caller-identity' failed: ${why:-no output}); run 'aws configure', or set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
  fi
  rm -f "$errors"
  local stack_lc="${STACK,,}"
  BUCKET="${IMGEDGE_BUCKET:-$stack_lc-images-$ACCOUNT}"
  ARTIFACT_BUCKET="${IMGEDGE_ARTIFACT_BUCKET:-$stack_lc-artifacts-$ACCOUNT}"
}

stack_output() {
  aws_text "<$1>" cloudformation describe-stacks --stack-name "$STACK" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue"
}

# The CloudFront Functions as deployed, in $DIST/cloudfront-function: minified by their
# package step (build.mjs, pinned terser) to stay under CloudFront's 10 KB limit, with the
# policy (--policy) baked into viewer-request.js; build.mjs refuses a bad policy, naming it.
build_functions() {
  local dir="$DIST/cloudfront-function" policy_args=()
  [[ -z "$POLICY_FILE" ]] || policy_args=(--policy "$POLICY_FILE")
  command -v node >/dev/null 2>&1 || die "node (>= 20) is needed to build the CloudFront Functions"
  [[ -d "$ROOT/infra/cloudfront-function/node_modules/terser" ]] ||
    (cd "$ROOT/infra/cloudfront-function" && npm ci --no-audit --no-fund --loglevel=error >&2) ||
    die "npm ci in infra/cloudfront-function failed"
  node "$ROOT/infra/cloudfront-function/build.mjs" --mode "$MODE" --out "$dir" "${policy_args[@]}" >&2 ||
    die "the CloudFront Functions did not build${POLICY_FILE:+ (policy $POLICY_FILE)}"
}

# The template with each minified CloudFront Function inlined at its placeholder line.
render_template() {
  local out=$1 placeholder dir="$DIST/cloudfront-function"
  for placeholder in @@VIEWER_REQUEST_JS@@ @@VIEWER_RESPONSE_JS@@; do
    grep -q "$placeholder" "$TEMPLATE" || die "$TEMPLATE has no $placeholder placeholder"
  done
  build_functions
  awk -v request="$dir/viewer-request.js" -v response="$dir/viewer-response.js" '
    /@@VIEWER_REQUEST_JS@@|@@VIEWER_RESPONSE_JS@@/ {
      js = /@@VIEWER_REQUEST_JS@@/ ? request : response
      indent = $0; sub(/[^ ].*$/, "", indent)
      while ((getline line < js) > 0) print (line == "" ? "" : indent line)
      close(js); next
    }
    { print }' "$TEMPLATE" >"$out"
}

# A keys file as edge/src/sign.rs (SigningKeys::parse) and the viewer-request function read
# it: lines trimmed; blank and '#' lines skipped; every other line a hex secret of at least 32
# hex digits, an even count; at least one secret. A bad line is named by its number, never
# shown (it may be a secret with a typo). Its text becomes one KeyValueStore value: <= 1 KB.
check_signing_keys() {
  local file=$1 line n=0 secrets=0 size
  [[ -f "$file" && -r "$file" ]] || die "--signing-keys $file: no such readable file (a keys file: one hex secret per line; or 'none' to turn signing off)"
  while IFS= read -r line || [[ -n "$line" ]]; do
    n=$((n + 1))
    line="${line#"${line%%[![:space:]]*}"}"
    line="${line%"${line##*[![:space:]]}"}"
    [[ -z "$line" || "$line" == "#"* ]] && continue
    if ((${#line} >= 32 && ${#line} % 2 == 0)) && [[ "$line" =~ ^[[:xdigit:]]+$ ]]; then
      secrets=$((secrets + 1))
    else
      die "signing keys $file, line $n: not a secret; each line is a hex secret of at least 32 hex digits (an even count, nothing else on the line), a '#' comment or blank"
    fi
  done <"$file"
  ((secrets > 0)) || die "signing keys $file: the file holds no secret; add one hex secret per line (e.g. from 'openssl rand -hex 32'), or pass 'none' to turn signing off"
  size=$(wc -c <"$file")
  ((size <= KVS_VALUE_LIMIT)) || die "signing keys $file: $((size)) bytes, but a CloudFront KeyValueStore value holds at most $KVS_VALUE_LIMIT; drop comments or retired keys (about 14 secrets of 64 hex digits fit)"
  SIGNING_KEY_COUNT=$secrets
}

# --alarm-topic: the ARN of a standard SNS topic in us-east-1 (CloudWatch alarms notify topics of
# their own Region; the stack's alarms live in us-east-1 with it). $2 names where it came from.
check_alarm_topic() {
  local arn=$1 given=$2
  [[ "$arn" =~ $ALARM_TOPIC_PATTERN ]] && return 0
  if [[ "$arn" =~ ^arn:aws[a-z-]*:sns:([a-z0-9-]+): && "${BASH_REMATCH[1]}" != us-east-1 ]]; then
    die "$given: the topic is in ${BASH_REMATCH[1]}, but the alarms live in us-east-1 with the stack and notify only a topic there; create one in us-east-1 (docs/operations.md#alarm-notifications)"
  fi
  die "$given: not the ARN of a standard SNS topic (arn:aws:sns:us-east-1:<account id>:<name>; 'aws sns create-topic --name NAME --region us-east-1' prints one)"
}

# The alarm topic exists and is readable (the stack would accept any well-formed ARN, and the
# alarms would then notify nothing). A topic of another account is not ours to read: its policy
# must let this account's CloudWatch alarms publish, which only its owner can check.
check_alarm_topic_exists() {
  local owner why errors
  owner=$(cut -d: -f5 <<<"$ALARM_TOPIC")
  if [[ "$owner" != "$ACCOUNT" ]]; then
    say "note: alarm topic $ALARM_TOPIC belongs to account $owner; its access policy must allow cloudwatch.amazonaws.com to publish from account $ACCOUNT"
    return
  fi
  errors=$(mktemp)
  if ! aws_run sns get-topic-attributes --topic-arn "$ALARM_TOPIC" --query Attributes.TopicArn --output text >/dev/null 2>"$errors"; then
    why=$(tr '\n' ' ' <"$errors")
    rm -f "$errors"
    die "cannot read the alarm topic $ALARM_TOPIC ('aws sns get-topic-attributes' failed: ${why:-no output}); create it first: aws sns create-topic --name NAME --region us-east-1 (docs/operations.md#alarm-notifications)"
  fi
  rm -f "$errors"
}

# A path as an absolute one (the AWS CLI's file:// and package.sh run elsewhere).
absolute() {
  printf '%s/%s\n' "$(cd "$(dirname "$1")" && pwd)" "$(basename "$1")"
}

# A cloudfront-keyvaluestore call (SigV4A). Its text output goes to KVS_OUT, its error to
# KVS_WHY (globals: no subshell, so callers can read them); --dry-run prints it and answers
# $1. AWS CLI v1 without the CRT cannot sign these calls: say how to get one that can.
kvs() {
  local placeholder=$1 errors status=0
  shift
  KVS_OUT="" KVS_WHY=""
  if ((DRY_RUN)); then
    show aws cloudfront-keyvaluestore "$@" --region "$REGION" --output text
    KVS_OUT=$placeholder
    return 0
  fi
  errors=$(mktemp)
  KVS_OUT=$(aws cloudfront-keyvaluestore "$@" --region "$REGION" --output text 2>"$errors") || status=$?
  KVS_WHY=$(tr '\n' ' ' <"$errors")
  rm -f "$errors"
  case "$KVS_WHY" in
    *"botocore[crt]"* | *"Missing Dependency"*)
      die "this AWS CLI cannot sign CloudFront KeyValueStore calls (SigV4A): use AWS CLI v2, or add the CRT to v1 ('pip install \"botocore[crt]\"'); the signing keys were not changed" ;;
  esac
  return "$status"
}

# --signing-keys: the keys file's text into the stack's KeyValueStore under signing-keys (the
# CLI reads the file itself, file://, so no secret is on a command line or in any output), or
# with 'none' the key deleted (signing off). Conditional on the store's ETag (if-match), so a
# concurrent change is refused rather than overwritten.
apply_signing_keys() {
  local arn etag
  arn=$(stack_output SigningKeyValueStoreArn)
  [[ -n "$arn" && "$arn" != None ]] ||
    die "stack $STACK has no SigningKeyValueStoreArn output (not deployed, or deployed from an older template: run 'deploy.sh deploy'); the signing keys were not changed"
  kvs "<ETag>" describe-key-value-store --kvs-arn "$arn" --query ETag ||
    die "cannot read the KeyValueStore $arn ($KVS_WHY); the signing keys were not changed"
  etag=$KVS_OUT
  if [[ "$SIGNING_KEYS" == none ]]; then
    if kvs "" delete-key --kvs-arn "$arn" --key "$SIGNING_KEYS_NAME" --if-match "$etag"; then
      say "signing keys deleted: signing is off (URLs need no sig) once CloudFront has the change, within seconds"
    else
      case "$KVS_WHY" in
        *ResourceNotFound*) say "no signing keys were set: signing was already off" ;;
        *) die "cannot delete the signing keys from $arn ($KVS_WHY); signing is unchanged" ;;
      esac
    fi
    return
  fi
  kvs "" put-key --kvs-arn "$arn" --key "$SIGNING_KEYS_NAME" --value "file://$SIGNING_KEYS" --if-match "$etag" ||
    die "cannot put the signing keys into $arn ($KVS_WHY); signing is unchanged (a ConflictException means it changed meanwhile: run again)"
  say "signing keys set: $SIGNING_KEY_COUNT secret(s) from $SIGNING_KEYS in $arn (key $SIGNING_KEYS_NAME);"
  say "within seconds every URL with a query needs a valid sig (docs/url-api.md#signed-urls)"
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

build_zip() {
  if [[ -n "${IMGEDGE_ZIP:-}" ]]; then
    [[ -f "$IMGEDGE_ZIP" ]] || die "IMGEDGE_ZIP=$IMGEDGE_ZIP does not exist"
    ZIP="$IMGEDGE_ZIP"
    if [[ "$MODE" == regional ]]; then
      say "using the prebuilt function zip $ZIP (IMGEDGE_ZIP); it must hold the regional bootstrap for $ARCH"
    else
      say "using the prebuilt function zip $ZIP (IMGEDGE_ZIP); its config.json must name bucket $BUCKET${POLICY_FILE:+ and hold the policy of $POLICY_FILE}"
    fi
    return
  fi
  if [[ "$MODE" == regional ]]; then
    # The regional zip is code only (bootstrap): its settings are the function's environment.
    ZIP="$DIST/regional-function.zip"
    local regional_args=("IMGEDGE_MODE=regional" "IMGEDGE_ARCH=$ARCH" "IMGEDGE_ZIP=$ZIP")
    if ((DRY_RUN)); then
      show env "${regional_args[@]}" "$ROOT/infra/package.sh"
      return
    fi
    env "${regional_args[@]}" "$ROOT/infra/package.sh"
    [[ -f "$ZIP" ]] || die "infra/package.sh did not produce $ZIP"
    return
  fi
  ZIP="$DIST/edge-function.zip"
  # infra/package.sh builds the Rust bootstrap and writes index.mjs, bootstrap and
  # config.json ({bucket, region, max_pixels, max_bytes[, policy]}) at the zip's root.
  local env_args=("IMGEDGE_BUCKET=$BUCKET" "IMGEDGE_REGION=$REGION")
  [[ -z "${IMGEDGE_MAX_PIXELS:-}" ]] || env_args+=("IMGEDGE_MAX_PIXELS=$IMGEDGE_MAX_PIXELS")
  [[ -z "${IMGEDGE_MAX_BYTES:-}" ]] || env_args+=("IMGEDGE_MAX_BYTES=$IMGEDGE_MAX_BYTES")
  # Always passed, empty for none: a policy in the caller's environment must not slip in.
  env_args+=("IMGEDGE_POLICY_FILE=$POLICY_FILE")
  if ((DRY_RUN)); then
    show env "${env_args[@]}" "$ROOT/infra/package.sh"
    return
  fi
  [[ -x "$ROOT/infra/package.sh" ]] || die "infra/package.sh is missing or not executable"
  env "${env_args[@]}" "$ROOT/infra/package.sh"
  [[ -f "$ZIP" ]] || die "infra/package.sh did not produce $ZIP"
}

# Whose bucket a name is, asked with --expected-bucket-owner so that S3 itself checks the
# account: "ours", "absent", or "foreign" (it exists, but another account owns it or hides
# it from us). Bucket names are global and ours are guessable (<stack>-…-<account id>), so a
# bucket someone else created first must never receive our code or be trusted for it.
bucket_state() {
  local bucket=$1 errors why
  if ((DRY_RUN)); then
    show aws s3api head-bucket --bucket "$bucket" --expected-bucket-owner "$ACCOUNT" --region "$REGION"
    echo absent # the plan of a first deployment
    return
  fi
  errors=$(mktemp)
  if aws s3api head-bucket --bucket "$bucket" --expected-bucket-owner "$ACCOUNT" --region "$REGION" >/dev/null 2>"$errors"; then
    rm -f "$errors"
    echo ours
    return
  fi
  why=$(tr '\n' ' ' <"$errors")
  rm -f "$errors"
  case "$why" in
    *"(404)"* | *"Not Found"* | *NoSuchBucket*) echo absent ;;
    *"(403)"* | *Forbidden* | *AccessDenied*) echo foreign ;;
    *) die "cannot check bucket $bucket ('aws s3api head-bucket' failed: ${why:-no output})" ;;
  esac
}

ensure_artifact_bucket() {
  local state
  state=$(bucket_state "$ARTIFACT_BUCKET")
  case "$state" in
    ours) return ;;
    foreign) die "the artifact bucket $ARTIFACT_BUCKET exists but is not owned by account $ACCOUNT: the function's code must not go there; set IMGEDGE_ARTIFACT_BUCKET to a bucket of yours (or a new name)" ;;
  esac
  say "creating the artifact bucket $ARTIFACT_BUCKET"
  # CreateBucket has no owner condition (it fails on a name taken by anyone else); every
  # call after it passes --expected-bucket-owner. us-east-1 takes no LocationConstraint.
  aws_run s3api create-bucket --bucket "$ARTIFACT_BUCKET" >/dev/null ||
    die "cannot create the artifact bucket $ARTIFACT_BUCKET (taken by another account since the check?); set IMGEDGE_ARTIFACT_BUCKET"
  aws_run s3api put-public-access-block --bucket "$ARTIFACT_BUCKET" --expected-bucket-owner "$ACCOUNT" \
    --public-access-block-configuration \
    BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
}

upload_zip() {
  local sha
  if [[ -f "$ZIP" ]]; then sha=$(sha256_of "$ZIP"); else sha="SHA256"; fi
  # Named by content: the same code is uploaded once, new code gets a new key, which
  # makes CloudFormation publish a new Lambda version (or update the regional function).
  ARTIFACT_KEY="$MODE-function/$sha.zip"
  local owner=(--expected-bucket-owner "$ACCOUNT")
  if ((!DRY_RUN)) && aws s3api head-object --bucket "$ARTIFACT_BUCKET" --key "$ARTIFACT_KEY" "${owner[@]}" --region "$REGION" >/dev/null 2>&1; then
    say "s3://$ARTIFACT_BUCKET/$ARTIFACT_KEY is already uploaded"
    return
  fi
  ((DRY_RUN)) && show aws s3api head-object --bucket "$ARTIFACT_BUCKET" --key "$ARTIFACT_KEY" "${owner[@]}" --region "$REGION"
  aws_run s3api put-object --bucket "$ARTIFACT_BUCKET" --key "$ARTIFACT_KEY" --body "$ZIP" "${owner[@]}" >/dev/null
}

# The stack creates the image bucket, and destroy keeps it: a new stack cannot take over a
# bucket of the same name, so say so before CloudFormation fails halfway.
check_bucket_is_new() {
  if ((DRY_RUN)); then
    show aws cloudformation describe-stacks --stack-name "$STACK" --region "$REGION"
  elif aws cloudformation describe-stacks --stack-name "$STACK" --region "$REGION" >/dev/null 2>&1; then
    return
  fi
  local state
  state=$(bucket_state "$BUCKET")
  case "$state" in
    ours) die "bucket $BUCKET already exists but stack $STACK does not (kept by an earlier destroy?): the stack creates its bucket, so choose a new IMGEDGE_BUCKET and copy the masters over, or delete the old bucket (docs/deploy.md)" ;;
    foreign) die "bucket $BUCKET already exists and belongs to another account (bucket names are global): choose another IMGEDGE_BUCKET" ;;
  esac
}

print_outputs() {
  aws_run cloudformation describe-stacks --stack-name "$STACK" \
    --query 'Stacks[0].Outputs[].[OutputKey,OutputValue]' --output table
}

# The policy as the regional function's IMGEDGE_POLICY (compact JSON; empty = none). Lambda@Edge
# reads its copy from config.json, so in edge mode the parameter stays empty. Lambda's environment
# holds 4 KB in all; the policy fits, since the viewer-request function that bakes it in must stay
# under 10 KB (build.mjs refuses it before this), which leaves about 3 KB for it.
policy_json() {
  POLICY_JSON=""
  [[ "$MODE" == regional && -n "$POLICY_FILE" ]] || return 0
  POLICY_JSON=$(python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1], encoding="utf-8")), separators=(",", ":")))' "$POLICY_FILE") ||
    die "--policy $POLICY_FILE: not JSON"
}

cmd_deploy() {
  # The CloudFront Functions first: it checks the policy before anything is called or created.
  mkdir -p "$DIST"
  local rendered="$DIST/template.yaml"
  render_template "$rendered"
  policy_json
  [[ -n "$POLICY_FILE" ]] || say "no policy (--policy FILE): the URL API's full ranges are allowed"
  preflight
  if [[ -n "$ALARM_TOPIC" ]]; then
    check_alarm_topic_exists
  else
    say "no alarm topic (--alarm-topic ARN): the alarms have no actions; they show on the dashboard only"
  fi
  check_bucket_is_new
  build_zip
  ensure_artifact_bucket
  upload_zip
  say "deploying stack $STACK (bucket $BUCKET); a new distribution takes 5-15 minutes"
  # A template body above 51,200 bytes must travel through S3. `cloudformation deploy`
  # uploads it without an owner condition; the bucket was just checked to be ours, and a
  # bucket cannot change owner without being deleted first.
  local via_s3=()
  if (($(wc -c <"$rendered") > 51200)); then
    via_s3=(--s3-bucket "$ARTIFACT_BUCKET" --s3-prefix templates)
  fi
  if ! aws_run cloudformation deploy --stack-name "$STACK" --template-file "$rendered" \
    "${via_s3[@]}" --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
    --parameter-overrides \
    "BucketName=$BUCKET" \
    "ArtifactBucket=$ARTIFACT_BUCKET" \
    "ArtifactKey=$ARTIFACT_KEY" \
    "PriceClass=${IMGEDGE_PRICE_CLASS:-PriceClass_100}" \
    "MemorySize=${IMGEDGE_MEMORY_MB:-1536}" \
    "Timeout=${IMGEDGE_TIMEOUT_S:-30}" \
    "VariantsExpirationDays=${IMGEDGE_VARIANTS_EXPIRATION_DAYS:-90}" \
    "Versioning=${IMGEDGE_VERSIONING:-false}" \
    "AlternateDomainNames=${IMGEDGE_DOMAINS:-}" \
    "AcmCertificateArn=${IMGEDGE_CERT_ARN:-}" \
    "AlarmTopicArn=$ALARM_TOPIC" \
    "Mode=$MODE" \
    "Architecture=$ARCH" \
    "MaxPixels=${IMGEDGE_MAX_PIXELS:-50000000}" \
    "MaxBytes=${IMGEDGE_MAX_BYTES:-33554432}" \
    "Policy=$POLICY_JSON"; then
    die "the stack deployment failed: see 'aws cloudformation describe-stack-events --stack-name $STACK --region $REGION'; a stack whose first creation failed (ROLLBACK_COMPLETE) must be removed with 'deploy.sh destroy' before deploying again"
  fi
  # After the stack, which creates the store. On a first deploy the bucket is new and empty
  # until then, so nothing can be made unsigned in between.
  [[ -z "$SIGNING_KEYS" ]] || apply_signing_keys
  [[ -z "$ALARM_TOPIC" ]] || say "alarms notify $ALARM_TOPIC (ALARM and OK)"
  print_outputs
  local url
  url=$(stack_output ExampleUrl)
  [[ -n "$url" && "$url" != None ]] || url="(the stack has no ExampleUrl output; see 'deploy.sh outputs')"
  say ""
  say "Upload masters:  generator upload DIR --bucket $BUCKET"
  say "Then open:       $url"
}

cmd_outputs() {
  preflight
  print_outputs
}

cmd_signing_keys() {
  (($# == 1)) || die "signing-keys needs one argument: a keys file, or 'none' to turn signing off"
  SIGNING_KEYS=$1
  [[ "$SIGNING_KEYS" == none ]] || { check_signing_keys "$SIGNING_KEYS"; SIGNING_KEYS=$(absolute "$SIGNING_KEYS"); }
  preflight
  apply_signing_keys
}

cmd_invalidate() {
  (($# > 0)) || die "invalidate needs at least one path, e.g. '/outputs/2025-02-01/image_001.png' or '/outputs/*'"
  local p
  for p in "$@"; do
    [[ "$p" == /* ]] || die "invalidation paths start with '/': $p"
  done
  preflight
  local id
  id=$(stack_output DistributionId)
  [[ -n "$id" && "$id" != None ]] || die "stack $STACK has no DistributionId output; is it deployed? (deploy.sh outputs)"
  local inv
  inv=$(aws_text "<invalidation-id>" cloudfront create-invalidation --distribution-id "$id" \
    --paths "$@" --query Invalidation.Id)
  say "invalidation $inv created on $id; it usually completes within a minute or two"
  say "(check: aws cloudfront get-invalidation --distribution-id $id --id $inv)"
}

# Logical ids of the resources CloudFormation failed to delete, space-separated.
failed_deletions() {
  aws_text "" cloudformation describe-stack-resources --stack-name "$STACK" \
    --query "StackResources[?ResourceStatus=='DELETE_FAILED'].LogicalResourceId"
}

# The buckets as the stack knows them, not as this shell's settings would derive them: the
# stack may have been deployed with other IMGEDGE_* values or from another machine.
read_stack_buckets() {
  local errors out why output_bucket param_bucket artifact
  errors=$(mktemp)
  # One round trip: the BucketName output (the parameter too, for a stack whose outputs are
  # gone, e.g. after a failed deletion) and the ArtifactBucket parameter (not a stack resource).
  if ! out=$(aws_text $'<BucketName>\t<BucketName>\t<ArtifactBucket>' cloudformation describe-stacks --stack-name "$STACK" \
    --query "Stacks[0].[Outputs[?OutputKey=='BucketName'].OutputValue|[0],Parameters[?ParameterKey=='BucketName'].ParameterValue|[0],Parameters[?ParameterKey=='ArtifactBucket'].ParameterValue|[0]]" 2>"$errors"); then
    why=$(tr '\n' ' ' <"$errors")
    rm -f "$errors"
    case "$why" in
      *"does not exist"*) die "stack $STACK does not exist in $REGION (account $ACCOUNT): nothing to destroy (IMGEDGE_STACK names another stack?)" ;;
      *) die "cannot read stack $STACK ('aws cloudformation describe-stacks' failed: ${why:-no output})" ;;
    esac
  fi
  rm -f "$errors"
  IFS=$'\t' read -r output_bucket param_bucket artifact <<<"$out"
  BUCKET=$output_bucket
  [[ -n "$BUCKET" && "$BUCKET" != None ]] || BUCKET=$param_bucket
  ARTIFACT_BUCKET=$artifact
  [[ -n "$BUCKET" && "$BUCKET" != None ]] || BUCKET="(unknown: the stack has no BucketName)"
  [[ -n "$ARTIFACT_BUCKET" && "$ARTIFACT_BUCKET" != None ]] || ARTIFACT_BUCKET="(unknown: the stack has no ArtifactBucket)"
}

# Show what destroy deletes and what it keeps, from the stack itself.
list_stack_resources() {
  local resources id type physical
  resources=$(aws_text $'<LogicalResourceId>\t<ResourceType>\t<PhysicalResourceId>' cloudformation describe-stack-resources \
    --stack-name "$STACK" --query 'StackResources[].[LogicalResourceId,ResourceType,PhysicalResourceId]')
  say "Stack $STACK ($REGION, account $ACCOUNT) will be deleted with its resources:"
  while IFS=$'\t' read -r id type physical; do
    [[ -n "$id" ]] || continue
    if [[ "$type" == AWS::S3::Bucket ]]; then
      say "  keep    $id ($type) $physical  — retained by the stack: it holds your masters"
    else
      say "  delete  $id ($type) $physical"
    fi
  done <<<"$resources"
  say "Kept: s3://$BUCKET (images) and s3://$ARTIFACT_BUCKET (function zips; not part of the stack)."
}

# destroy cannot be undone: ask, unless --yes; never guess an answer without a terminal.
confirm_destroy() {
  ((ASSUME_YES)) && return 0
  if ((DRY_RUN)); then
    say "(a real run asks for confirmation here; --yes skips the question)"
    return 0
  fi
  [[ -t 0 ]] || die "destroy asks for confirmation, but its input is not a terminal: run it from a terminal, or pass --yes to confirm in advance (nothing was deleted)"
  local answer=""
  read -r -p "Type the stack name ($STACK) to delete it: " answer || true
  [[ "$answer" == "$STACK" ]] || die "not confirmed (the answer was not '$STACK'); nothing was deleted"
}

cmd_destroy() {
  preflight
  read_stack_buckets
  list_stack_resources
  confirm_destroy
  say "Destroying stack $STACK. The image bucket $BUCKET is kept (it holds your masters)."
  say "Lambda@Edge: CloudFront first deletes the distribution, which disassociates the function;"
  say "its replicas at the edges are then removed within a few hours, and until then Lambda"
  say "refuses to delete the function. This command retries the deletion every"
  say "${IMGEDGE_DESTROY_RETRY_MINUTES:-15} minutes (IMGEDGE_DESTROY_RETRY_MINUTES), up to ${IMGEDGE_DESTROY_ATTEMPTS:-16} attempts;"
  say "interrupting it is safe: run 'deploy.sh destroy' again later."
  local attempts=${IMGEDGE_DESTROY_ATTEMPTS:-16} minutes=${IMGEDGE_DESTROY_RETRY_MINUTES:-15} attempt failed
  for ((attempt = 1; attempt <= attempts; attempt++)); do
    aws_run cloudformation delete-stack --stack-name "$STACK"
    if aws_run cloudformation wait stack-delete-complete --stack-name "$STACK"; then
      say "stack $STACK deleted."
      say "Left on purpose: s3://$BUCKET (images) and s3://$ARTIFACT_BUCKET (function zips)."
      say "Remove them, after checking they are account $ACCOUNT's and hold nothing you need:"
      say "  aws s3 rb s3://$BUCKET --force; aws s3 rb s3://$ARTIFACT_BUCKET --force"
      return 0
    fi
    failed=$(failed_deletions)
    case " $failed " in
      *" EdgeFunction "*) ;;
      *) die "stack deletion failed (resources: ${failed:-unknown}); see 'aws cloudformation describe-stack-events --stack-name $STACK'" ;;
    esac
    if ((attempt == attempts)); then
      die "the Lambda@Edge function still has replicas after $attempts attempts; run 'deploy.sh destroy' again later"
    fi
    say "attempt $attempt: $failed not deletable yet (Lambda@Edge replicas still being removed); retrying in $minutes minutes"
    sleep "$((minutes * 60))"
  done
}

main() {
  local args=() policy_given=0 alarm_topic_given=0 mode_given=0
  while (($#)); do
    case "$1" in
      --dry-run) DRY_RUN=1 ;;
      -y | --yes) ASSUME_YES=1 ;;
      -h | --help) usage; exit 0 ;;
      --policy | --signing-keys)
        (($# > 1)) || die "$1 needs an argument: a file (docs/deploy.md)"
        if [[ "$1" == --policy ]]; then POLICY_FILE=$2 policy_given=1; else SIGNING_KEYS=$2; fi
        shift ;;
      --alarm-topic)
        (($# > 1)) || die "--alarm-topic needs an argument: an SNS topic ARN in us-east-1 (docs/operations.md)"
        ALARM_TOPIC=$2 alarm_topic_given=1
        shift ;;
      --mode | --arch)
        (($# > 1)) || die "$1 needs an argument (docs/deploy.md#modes)"
        if [[ "$1" == --mode ]]; then MODE=$2 mode_given=1; else ARCH=$2 mode_given=1; fi
        shift ;;
      *) args+=("$1") ;;
    esac
    shift
  done
  ((${#args[@]})) || { usage >&2; exit 2; }
  local cmd=${args[0]}
  case "$cmd" in
    deploy | render) ;;
    *) ((!policy_given)) || die "--policy goes with deploy (or render), not $cmd" ;;
  esac
  [[ -z "$SIGNING_KEYS" || "$cmd" == deploy ]] ||
    die "--signing-keys goes with deploy; to change only the keys: deploy.sh signing-keys FILE|none"
  ((!alarm_topic_given)) || [[ "$cmd" == deploy ]] || die "--alarm-topic goes with deploy, not $cmd"
  ((!mode_given)) || [[ "$cmd" == deploy || "$cmd" == render ]] || die "--mode and --arch go with deploy (or render), not $cmd"
  [[ "$MODE" == edge || "$MODE" == regional ]] || die "--mode (or IMGEDGE_MODE) must be edge or regional, got '$MODE' (docs/deploy.md#modes)"
  [[ "$ARCH" == arm64 || "$ARCH" == x86_64 ]] || die "--arch (or IMGEDGE_ARCH) must be arm64 or x86_64, got '$ARCH'"
  # Inputs are checked before anything is built, called or created.
  if [[ -n "$POLICY_FILE" && ("$cmd" == deploy || "$cmd" == render) ]]; then
    local given="--policy $POLICY_FILE"
    ((policy_given)) || given="IMGEDGE_POLICY_FILE=$POLICY_FILE"
    [[ -f "$POLICY_FILE" && -r "$POLICY_FILE" ]] || die "$given: no such readable file (a policy.json: docs/url-api.md)"
    POLICY_FILE=$(absolute "$POLICY_FILE")
  fi
  if [[ -n "$ALARM_TOPIC" && "$cmd" == deploy ]]; then
    local topic_given="--alarm-topic $ALARM_TOPIC"
    ((alarm_topic_given)) || topic_given="IMGEDGE_ALARM_TOPIC=$ALARM_TOPIC"
    check_alarm_topic "$ALARM_TOPIC" "$topic_given"
  fi
  if [[ -n "$SIGNING_KEYS" && "$SIGNING_KEYS" != none ]]; then
    check_signing_keys "$SIGNING_KEYS"
    SIGNING_KEYS=$(absolute "$SIGNING_KEYS")
  fi
  # Dry-run lines go to stdout even from inside command substitutions.
  exec 3>&1
  case "$cmd" in
    deploy) cmd_deploy ;;
    signing-keys) cmd_signing_keys "${args[@]:1}" ;;
    invalidate) cmd_invalidate "${args[@]:1}" ;;
    outputs) cmd_outputs ;;
    destroy) cmd_destroy ;;
    render) render_template "${args[1]:-/dev/stdout}" ;;
    *) usage >&2; die "unknown command: $cmd" ;;
  esac
}

main "$@"
