#!/usr/bin/env bash
# Deploy imgedge to AWS: S3 bucket + CloudFront (OAC) + CloudFront Function + Lambda@Edge,
# all from infra/template.yaml in us-east-1. See docs/deploy.md.
#
#   infra/deploy.sh [--dry-run] deploy             build the function zip, upload it, deploy the stack
#   infra/deploy.sh [--dry-run] invalidate PATH... invalidate cached URLs (e.g. '/outputs/*')
#   infra/deploy.sh [--dry-run] outputs            print the stack's outputs (URLs, ids)
#   infra/deploy.sh [--dry-run] destroy            delete the stack (waits out Lambda@Edge replicas)
#   infra/deploy.sh render [FILE]                  write the template with the CloudFront Function inlined
#
# --dry-run prints every AWS CLI call (one line each, starting with "+ aws") instead of running
# it, and needs neither the AWS CLI nor credentials; values that would come from AWS are shown
# as placeholders. Settings (environment):
#   AWS_REGION                         must be us-east-1 (Lambda@Edge and CloudFront certificates)
#   IMGEDGE_STACK=imgedge              stack name, prefix of every resource name
#   IMGEDGE_BUCKET                     image bucket (default <stack>-images-<account id>)
#   IMGEDGE_ARTIFACT_BUCKET            bucket for the function zip (default <stack>-artifacts-<account id>)
#   IMGEDGE_PRICE_CLASS=PriceClass_100 IMGEDGE_MEMORY_MB=1536 IMGEDGE_TIMEOUT_S=30
#   IMGEDGE_VARIANTS_EXPIRATION_DAYS=90 IMGEDGE_VERSIONING=false
#   IMGEDGE_DOMAINS=a.example.com,b.example.com  IMGEDGE_CERT_ARN=arn:aws:acm:us-east-1:…
#   IMGEDGE_MAX_PIXELS, IMGEDGE_MAX_BYTES  limits written into config.json by infra/package.sh
#   IMGEDGE_ZIP                        use this prebuilt zip instead of running infra/package.sh
#   IMGEDGE_DESTROY_RETRY_MINUTES=15 IMGEDGE_DESTROY_ATTEMPTS=16  destroy's wait for replicas
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIST="$ROOT/dist"
FUNCTION_JS="$ROOT/infra/cloudfront-function/viewer-request.js"
TEMPLATE="$ROOT/infra/template.yaml"
REQUIRED_REGION=us-east-1

DRY_RUN=0
REGION=""
STACK="${IMGEDGE_STACK:-imgedge}"

die() {
  printf 'deploy.sh: %s\n' "$*" >&2
  exit 1
}

say() {
  printf '%s\n' "$*" >&2
}

usage() {
  sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
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

resolve_region() {
  REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
  if [[ -z "$REGION" ]] && ((!DRY_RUN)) && command -v aws >/dev/null 2>&1; then
    REGION=$(aws configure get region 2>/dev/null || true)
  fi
  [[ -n "$REGION" ]] || die "no AWS region is set: export AWS_REGION=$REQUIRED_REGION (Lambda@Edge functions and CloudFront certificates live there)"
  [[ "$REGION" == "$REQUIRED_REGION" ]] || die "region is $REGION, but this stack must be deployed in $REQUIRED_REGION (Lambda@Edge and CloudFront's ACM certificates only work from there): export AWS_REGION=$REQUIRED_REGION"
}

# Fail early, with the fix, when the AWS CLI or credentials are missing.
preflight() {
  resolve_region
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

# The template with the CloudFront Function's source inlined at its placeholder line.
render_template() {
  local out=$1
  grep -q '@@VIEWER_REQUEST_JS@@' "$TEMPLATE" || die "$TEMPLATE has no @@VIEWER_REQUEST_JS@@ placeholder"
  awk -v js="$FUNCTION_JS" '
    /@@VIEWER_REQUEST_JS@@/ {
      indent = $0; sub(/[^ ].*$/, "", indent)
      while ((getline line < js) > 0) print (line == "" ? "" : indent line)
      close(js); next
    }
    { print }' "$TEMPLATE" >"$out"
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
    say "using the prebuilt function zip $ZIP (IMGEDGE_ZIP); its config.json must name bucket $BUCKET"
    return
  fi
  ZIP="$DIST/edge-function.zip"
  # infra/package.sh builds the Rust bootstrap and writes index.mjs, bootstrap and
  # config.json ({bucket, region, max_pixels, max_bytes}) at the zip's root.
  local env_args=("IMGEDGE_BUCKET=$BUCKET" "IMGEDGE_REGION=$REGION")
  [[ -z "${IMGEDGE_MAX_PIXELS:-}" ]] || env_args+=("IMGEDGE_MAX_PIXELS=$IMGEDGE_MAX_PIXELS")
  [[ -z "${IMGEDGE_MAX_BYTES:-}" ]] || env_args+=("IMGEDGE_MAX_BYTES=$IMGEDGE_MAX_BYTES")
  if ((DRY_RUN)); then
    show env "${env_args[@]}" "$ROOT/infra/package.sh"
    return
  fi
  [[ -x "$ROOT/infra/package.sh" ]] || die "infra/package.sh is missing or not executable"
  env "${env_args[@]}" "$ROOT/infra/package.sh"
  [[ -f "$ZIP" ]] || die "infra/package.sh did not produce $ZIP"
}

ensure_artifact_bucket() {
  if ((!DRY_RUN)) && aws s3api head-bucket --bucket "$ARTIFACT_BUCKET" --region "$REGION" >/dev/null 2>&1; then
    return
  fi
  ((DRY_RUN)) && show aws s3api head-bucket --bucket "$ARTIFACT_BUCKET" --region "$REGION"
  say "creating the artifact bucket $ARTIFACT_BUCKET"
  # us-east-1 takes no LocationConstraint.
  aws_run s3api create-bucket --bucket "$ARTIFACT_BUCKET" >/dev/null
  aws_run s3api put-public-access-block --bucket "$ARTIFACT_BUCKET" \
    --public-access-block-configuration \
    BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
}

upload_zip() {
  local sha
  if [[ -f "$ZIP" ]]; then sha=$(sha256_of "$ZIP"); else sha="SHA256"; fi
  # Named by content: the same code is uploaded once, new code gets a new key, which
  # makes CloudFormation publish a new Lambda version.
  ARTIFACT_KEY="edge-function/$sha.zip"
  if ((!DRY_RUN)) && aws s3api head-object --bucket "$ARTIFACT_BUCKET" --key "$ARTIFACT_KEY" --region "$REGION" >/dev/null 2>&1; then
    say "s3://$ARTIFACT_BUCKET/$ARTIFACT_KEY is already uploaded"
    return
  fi
  ((DRY_RUN)) && show aws s3api head-object --bucket "$ARTIFACT_BUCKET" --key "$ARTIFACT_KEY" --region "$REGION"
  aws_run s3api put-object --bucket "$ARTIFACT_BUCKET" --key "$ARTIFACT_KEY" --body "$ZIP" >/dev/null
}

# The stack creates the image bucket, and destroy keeps it: a new stack cannot take over a
# bucket of the same name, so say so before CloudFormation fails halfway.
check_bucket_is_new() {
  if ((DRY_RUN)); then
    show aws cloudformation describe-stacks --stack-name "$STACK" --region "$REGION"
    show aws s3api head-bucket --bucket "$BUCKET" --region "$REGION"
    return
  fi
  if aws cloudformation describe-stacks --stack-name "$STACK" --region "$REGION" >/dev/null 2>&1; then
    return
  fi
  if aws s3api head-bucket --bucket "$BUCKET" --region "$REGION" >/dev/null 2>&1; then
    die "bucket $BUCKET already exists but stack $STACK does not (kept by an earlier destroy?): the stack creates its bucket, so choose a new IMGEDGE_BUCKET and copy the masters over, or delete the old bucket (docs/deploy.md)"
  fi
}

print_outputs() {
  aws_run cloudformation describe-stacks --stack-name "$STACK" \
    --query 'Stacks[0].Outputs[].[OutputKey,OutputValue]' --output table
}

cmd_deploy() {
  preflight
  check_bucket_is_new
  build_zip
  ensure_artifact_bucket
  upload_zip
  mkdir -p "$DIST"
  local rendered="$DIST/template.yaml"
  render_template "$rendered"
  say "deploying stack $STACK (bucket $BUCKET); a new distribution takes 5-15 minutes"
  # A template body above 51,200 bytes must travel through S3.
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
    "AcmCertificateArn=${IMGEDGE_CERT_ARN:-}"; then
    die "the stack deployment failed: see 'aws cloudformation describe-stack-events --stack-name $STACK --region $REGION'; a stack whose first creation failed (ROLLBACK_COMPLETE) must be removed with 'deploy.sh destroy' before deploying again"
  fi
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

cmd_destroy() {
  preflight
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
      say "Remove them with: aws s3 rb s3://$BUCKET --force; aws s3 rb s3://$ARTIFACT_BUCKET --force"
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
  local args=()
  while (($#)); do
    case "$1" in
      --dry-run) DRY_RUN=1 ;;
      -h | --help) usage; exit 0 ;;
      *) args+=("$1") ;;
    esac
    shift
  done
  ((${#args[@]})) || { usage >&2; exit 2; }
  # Dry-run lines go to stdout even from inside command substitutions.
  exec 3>&1
  local cmd=${args[0]}
  case "$cmd" in
    deploy) cmd_deploy ;;
    invalidate) cmd_invalidate "${args[@]:1}" ;;
    outputs) cmd_outputs ;;
    destroy) cmd_destroy ;;
    render) render_template "${args[1]:-/dev/stdout}" ;;
    *) usage >&2; die "unknown command: $cmd" ;;
  esac
}

main "$@"
