#!/usr/bin/env python3
"""Policy rules for infra/template.yaml (DESIGN.md §7, issue 6; alarms and dashboard: issue 16,
docs/operations.md), in the spirit of cfn-guard.

Usage: check_template.py TEMPLATE [--mode edge|regional] [--function BUILT_JS]
                         [--response-function BUILT_JS] [--function-source SOURCE_JS]

The template has two modes (parameter Mode: edge, regional; docs/deploy.md#modes). Each rule
runs on the template as CloudFormation sees it in a mode: resources and outputs of the other
mode dropped, Fn::If on a mode's condition resolved. Without --mode every mode is checked (the
template with placeholders); a rendered template is checked in the mode it was rendered for,
since its inlined viewer-request function is that mode's build.

--function and --response-function are what deploy.sh inlines (build.mjs's minified
viewer-request.js and viewer-response.js), each compared byte for byte with the FunctionCode of
the function associated with that event; --function-source is
infra/cloudfront-function/viewer-request.js, whose NAMES line must list the URL API's
parameters (the minifier renames that variable).

Each rule is a function over the parsed template that returns the violations it finds, so a
broken template names the rule it breaks (infra/policy/test_policy.py breaks each on purpose).
The YAML loader understands CloudFormation's short tags (!Ref, !Sub, !GetAtt, ...), turning
them into their long JSON forms, so the rules see what CloudFormation sees.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

# DESIGN.md §1: the URL API's parameters, which are the cache key's query allowlist.
URL_API_PARAMS = ["w", "h", "fit", "fmt", "q", "dpr", "bg"]
HTTPS_ONLY = {"redirect-to-https", "https-only"}
# The CloudFront Functions by event type: the placeholder deploy.sh replaces with each.
PLACEHOLDERS = {"viewer-request": "@@VIEWER_REQUEST_JS@@", "viewer-response": "@@VIEWER_RESPONSE_JS@@"}

# Operations (docs/operations.md). The parameter naming the SNS topic the alarms notify.
ALARM_TOPIC_PARAM = "AlarmTopicArn"
# The alarms the template must have, by the CloudFront metrics (us-east-1, Region=Global, this
# distribution) each watches: viewers' 5xx rate, Lambda@Edge failures, Lambda@Edge throttles.
REQUIRED_ALARMS = {
    "CloudFront 5xx error rate": {"5xxErrorRate"},
    "Lambda@Edge errors": {"LambdaExecutionError", "LambdaValidationError"},
    "Lambda@Edge throttles": {"LambdaLimitExceededErrors"},
}
# Lambda@Edge runs in the Regions of CloudFront's regional edge caches. AWS publishes no list;
# these are the known ones. Every per-Region graph of the dashboard draws exactly these.
EDGE_REGIONS = [
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-west-2", "eu-central-1",
    "ap-south-1", "ap-northeast-1", "ap-northeast-2", "ap-southeast-1", "ap-southeast-2", "sa-east-1",
]
# The Lambda's embedded metric format (DESIGN.md §11): edge/src must emit exactly these names,
# one document per request, dimension sets [["Outcome"]] and, for errors, also ["ErrorCode"].
EMF_NAMESPACE = "imgedge"
EMF_METRICS = {
    "Requests", "RenderMs", "FetchMs", "DecodeMs", "ResizeMs", "EncodeMs", "StoreMs", "TotalMs",
    "BytesIn", "BytesOut", "StoreRoundTrips",
}
EMF_DIMENSIONS = {
    "Outcome": {"built", "reused", "master", "error"},
    # DESIGN.md §3's error codes (busy only in edge serve, which emits no EMF).
    "ErrorCode": {
        "invalid_key", "invalid_parameter", "invalid_signature", "not_found", "unsupported_image",
        "image_too_large", "busy", "timeout", "store_error", "internal",
    },
}


# The template's parameter choosing where variants are built, and its values.
MODE_PARAM = "Mode"
MODES = ("edge", "regional")
# The header the regional viewer-request function sets and the origin request policy forwards.
VIEWER_URL_HEADER = "x-imgedge-viewer-url"
# Statuses of the bucket on which the origin group asks the regional function.
FAILOVER_STATUSES = {403, 404}
# The regional mode's alarms, by the AWS/Lambda metrics of the regional function each watches.
REGIONAL_ALARMS = {
    "CloudFront 5xx error rate": {"5xxErrorRate"},
    "regional function errors": {"Errors"},
    "regional function throttles": {"Throttles"},
}


class CfnLoader(yaml.SafeLoader):
    """SafeLoader plus CloudFormation's `!Tag` short forms."""


def _cfn_tag(loader: CfnLoader, suffix: str, node: yaml.Node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _cfn_tag)


def load(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=CfnLoader)


def mode_conditions(t: dict) -> dict:
    """{condition name: mode} for the conditions Equals(Ref Mode, <mode>)."""
    out = {}
    for name, c in (t.get("Conditions") or {}).items():
        args = c.get("Fn::Equals") if isinstance(c, dict) else None
        if isinstance(args, list) and len(args) == 2:
            for a, b in (args, args[::-1]):
                if a == {"Ref": MODE_PARAM} and b in MODES:
                    out[name] = b
    return out


_DROP = object()


def for_mode(t: dict, mode: str) -> dict:
    """The template as CloudFormation sees it with Mode = mode: resources and outputs whose
    condition is another mode's dropped; Fn::If on a mode condition replaced by its branch (an
    AWS::NoValue branch removes the key or list item). Other conditions stay as they are."""
    conds = mode_conditions(t)

    def resolve(node):
        if isinstance(node, dict):
            branch = node.get("Fn::If")
            if len(node) == 1 and isinstance(branch, list) and len(branch) == 3 and branch[0] in conds:
                chosen = branch[1] if conds[branch[0]] == mode else branch[2]
                return _DROP if chosen == {"Ref": "AWS::NoValue"} else resolve(chosen)
            return {k: r for k, r in ((k, resolve(v)) for k, v in node.items()) if r is not _DROP}
        if isinstance(node, list):
            return [r for r in (resolve(v) for v in node) if r is not _DROP]
        return node

    out = resolve(t)
    for section in ("Resources", "Outputs"):
        out[section] = {
            k: v
            for k, v in (out.get(section) or {}).items()
            if v.get("Condition") not in conds or conds[v["Condition"]] == mode
        }
    out["_mode"] = mode
    return out


def mode_of(t: dict) -> str:
    return t.get("_mode", "edge")


def template_modes(t: dict) -> list:
    """The modes a template can be deployed in (edge only when it has no Mode parameter)."""
    param = (t.get("Parameters") or {}).get(MODE_PARAM)
    return [m for m in MODES if m in (param or {}).get("AllowedValues", [])] or ["edge"]


def resources(t: dict, kind: str) -> dict:
    return {k: r for k, r in t.get("Resources", {}).items() if r.get("Type") == kind}


def props(resource: dict) -> dict:
    return resource.get("Properties", {}) or {}


def as_list(x) -> list:
    return x if isinstance(x, list) else [x]


def refers_to(value, logical_id: str) -> bool:
    """True when a value is (or is a Sub/GetAtt/Ref over) the given resource."""
    if isinstance(value, dict):
        if value.get("Ref") == logical_id:
            return True
        if "Fn::GetAtt" in value and as_list(value["Fn::GetAtt"])[0] == logical_id:
            return True
        if "Fn::Sub" in value:
            text = value["Fn::Sub"]
            text = text[0] if isinstance(text, list) else text
            return bool(re.search(r"\$\{" + re.escape(logical_id) + r"(\.[A-Za-z]+)?\}", text))
    return False


def walk(node, path="$"):
    """Every (path, key, value) of mappings in a nested structure."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield path, k, v
            yield from walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


def policy_documents(t: dict):
    """(label, document) for every IAM policy document in the template."""
    for name, r in t.get("Resources", {}).items():
        p = props(r)
        if "PolicyDocument" in p:
            yield name, p["PolicyDocument"]
        if "AssumeRolePolicyDocument" in p:
            yield f"{name}.AssumeRolePolicyDocument", p["AssumeRolePolicyDocument"]
        for i, pol in enumerate(p.get("Policies", []) or []):
            yield f"{name}.Policies[{i}]", pol.get("PolicyDocument", {})


def statements(doc: dict) -> list:
    return as_list(doc.get("Statement", []))


def image_bucket_ids(t: dict) -> list:
    return list(resources(t, "AWS::S3::Bucket"))


def distributions(t: dict) -> dict:
    return resources(t, "AWS::CloudFront::Distribution")


def behaviors(dist: dict) -> list:
    cfg = props(dist).get("DistributionConfig", {})
    return [cfg.get("DefaultCacheBehavior", {})] + list(cfg.get("CacheBehaviors", []) or [])


# --- rules -----------------------------------------------------------------------------


def rule_public_access_blocked(t):
    """Every bucket blocks all four kinds of public access and has no public ACL."""
    out = []
    buckets = resources(t, "AWS::S3::Bucket")
    if not buckets:
        out.append("no S3 bucket in the template")
    for name, b in buckets.items():
        block = props(b).get("PublicAccessBlockConfiguration", {})
        for flag in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
            if block.get(flag) is not True:
                out.append(f"{name}: PublicAccessBlockConfiguration.{flag} is not true")
        if props(b).get("AccessControl") not in (None, "Private"):
            out.append(f"{name}: AccessControl {props(b)['AccessControl']} grants public access")
    return out


def rule_bucket_hygiene(t):
    """Owner enforced (no ACLs), encryption at rest, variants expire."""
    out = []
    for name, b in resources(t, "AWS::S3::Bucket").items():
        p = props(b)
        rules = p.get("OwnershipControls", {}).get("Rules", [])
        if [r.get("ObjectOwnership") for r in rules] != ["BucketOwnerEnforced"]:
            out.append(f"{name}: ObjectOwnership is not BucketOwnerEnforced")
        sse = p.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        if not any(s.get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for s in sse):
            out.append(f"{name}: no default encryption")
        lifecycle = p.get("LifecycleConfiguration", {}).get("Rules", [])
        if not any(
            r.get("Status") == "Enabled" and r.get("Prefix") == "_variants/" and r.get("ExpirationInDays")
            for r in lifecycle
        ):
            out.append(f"{name}: no enabled lifecycle rule expiring _variants/")
    return out


def function_url_of(domain) -> str | None:
    """The AWS::Lambda::Url a custom origin's DomainName takes the host of, if it is one:
    Select(2, Split("/", GetAtt(<url>, FunctionUrl)))."""
    if not isinstance(domain, dict) or list(domain) != ["Fn::Select"]:
        return None
    index, value = (domain["Fn::Select"] + [None, None])[:2]
    split = value.get("Fn::Split") if isinstance(value, dict) else None
    if index not in (2, "2") or not isinstance(split, list) or split[0] != "/":
        return None
    att = split[1].get("Fn::GetAtt") if isinstance(split[1], dict) else None
    return att[0] if isinstance(att, list) and att[1:] == ["FunctionUrl"] else None


def rule_origin_uses_oac(t):
    """Every origin is signed by an always-signing SigV4 OAC of its kind: the template's bucket
    (an s3 OAC, never an OAI), or in regional mode the regional function's URL (a lambda OAC)."""
    out = []
    oacs = resources(t, "AWS::CloudFront::OriginAccessControl")
    kinds = {}
    for oac_name, oac in oacs.items():
        cfg = props(oac).get("OriginAccessControlConfig", {})
        kinds[oac_name] = cfg.get("OriginAccessControlOriginType")
        if (cfg.get("SigningBehavior"), cfg.get("SigningProtocol")) != ("always", "sigv4") or kinds[oac_name] not in ("s3", "lambda"):
            out.append(f"{oac_name}: OAC must be s3 or lambda / sigv4 / always sign")
    if not distributions(t):
        out.append("no CloudFront distribution in the template")
    urls = resources(t, "AWS::Lambda::Url")
    for dname, d in distributions(t).items():
        origins = props(d).get("DistributionConfig", {}).get("Origins", [])
        if not origins:
            out.append(f"{dname}: no origins")
        for o in origins:
            label = f"{dname} origin {o.get('Id')}"
            custom = "CustomOriginConfig" in o
            kind = "lambda" if custom else "s3"
            if custom:
                if mode_of(t) != "regional" or function_url_of(o.get("DomainName")) not in urls:
                    out.append(f"{label}: a custom origin that is not the regional function's URL")
                if o["CustomOriginConfig"].get("OriginProtocolPolicy") != "https-only":
                    out.append(f"{label}: the function URL must be reached over HTTPS only")
            elif not any(refers_to(o.get("DomainName"), b) for b in image_bucket_ids(t)):
                out.append(f"{label}: origin is not the template's bucket")
            if not any(refers_to(o.get("OriginAccessControlId"), n) and kinds[n] == kind for n in oacs):
                out.append(f"{label}: OriginAccessControlId does not name the template's {kind} OAC")
            if o.get("S3OriginConfig", {}).get("OriginAccessIdentity", "") != "":
                out.append(f"{label}: uses a legacy origin access identity")
    return out


def rule_bucket_policy_is_the_seeds(t):
    """Bucket policy: only CloudFront's service principal, only for this distribution."""
    out = []
    policies = resources(t, "AWS::S3::BucketPolicy")
    if not policies:
        out.append("no bucket policy: CloudFront (OAC) could not read the bucket")
    dists = list(distributions(t))
    for name, pol in policies.items():
        p = props(pol)
        if not any(refers_to(p.get("Bucket"), b) for b in image_bucket_ids(t)):
            out.append(f"{name}: not attached to the template's bucket")
        stmts = statements(p.get("PolicyDocument", {}))
        sids = [s.get("Sid") for s in stmts]
        if "AllowCloudFrontServicePrincipal" not in sids:
            out.append(f"{name}: no statement AllowCloudFrontServicePrincipal")
        for s in stmts:
            label = f"{name} statement {s.get('Sid')}"
            if s.get("Effect") != "Allow":
                continue
            if s.get("Principal") != {"Service": "cloudfront.amazonaws.com"}:
                out.append(f"{label}: principal is not exactly Service cloudfront.amazonaws.com")
            source = s.get("Condition", {}).get("StringEquals", {}).get("AWS:SourceArn")
            if not any(refers_to(source, d) for d in dists) or "cloudfront::" not in str(source):
                out.append(f"{label}: no StringEquals AWS:SourceArn condition on this distribution's ARN")
            actions = set(as_list(s.get("Action", [])))
            if not actions <= {"s3:GetObject", "s3:ListBucket"}:
                out.append(f"{label}: grants {sorted(actions)}; CloudFront needs only s3:GetObject (+ s3:ListBucket)")
        if "s3:GetObject" not in {a for s in stmts for a in as_list(s.get("Action", []))}:
            out.append(f"{name}: CloudFront is not granted s3:GetObject")
    return out


def rule_no_star_principal(t):
    """No policy anywhere names `*` as principal (directly or as AWS: *)."""
    out = []
    for label, doc in policy_documents(t):
        for s in statements(doc):
            pr = s.get("Principal")
            values = [pr] if isinstance(pr, str) else [v for vs in (pr or {}).values() for v in as_list(vs)]
            if "*" in values:
                out.append(f"{label} statement {s.get('Sid')}: principal '*'")
            if "NotPrincipal" in s:
                out.append(f"{label} statement {s.get('Sid')}: NotPrincipal")
    return out


def rule_no_wildcard_actions(t):
    """No `s3:*` (or any wildcard action, or NotAction) in any policy."""
    out = []
    for label, doc in policy_documents(t):
        for s in statements(doc):
            if "NotAction" in s:
                out.append(f"{label} statement {s.get('Sid')}: NotAction")
            for a in as_list(s.get("Action", [])):
                if isinstance(a, str) and "*" in a:
                    out.append(f"{label} statement {s.get('Sid')}: wildcard action {a}")
    return out


def rule_cache_key_is_the_url_api(t, url_params=URL_API_PARAMS):
    """Cache key: exactly the URL API's query parameters; no cookies, no headers."""
    out = []
    policies = resources(t, "AWS::CloudFront::CachePolicy")
    if not policies:
        out.append("no cache policy")
    for name, cp in policies.items():
        key = props(cp).get("CachePolicyConfig", {}).get("ParametersInCacheKeyAndForwardedToOrigin", {})
        qs = key.get("QueryStringsConfig", {})
        if qs.get("QueryStringBehavior") != "whitelist":
            out.append(f"{name}: QueryStringBehavior is {qs.get('QueryStringBehavior')}, not whitelist")
        given = qs.get("QueryStrings", [])
        if sorted(given) != sorted(url_params) or len(given) != len(set(given)):
            out.append(f"{name}: query allowlist {given} is not the URL API's {url_params}")
        if key.get("CookiesConfig", {}).get("CookieBehavior") != "none":
            out.append(f"{name}: cookies are in the cache key")
        if key.get("HeadersConfig", {}).get("HeaderBehavior") != "none":
            out.append(f"{name}: headers are in the cache key")
        cfg = props(cp).get("CachePolicyConfig", {})
        if not (cfg.get("DefaultTTL") == 86400 and cfg.get("MaxTTL") == 31536000):
            out.append(f"{name}: TTLs are not default 1 day / max 1 year")
        if not (key.get("EnableAcceptEncodingGzip") and key.get("EnableAcceptEncodingBrotli")):
            out.append(f"{name}: gzip/brotli not enabled")
    for dname, d in distributions(t).items():
        for b in behaviors(d):
            if not any(refers_to(b.get("CachePolicyId"), n) for n in policies):
                out.append(f"{dname}: a cache behavior does not use the template's cache policy")
    return out


def rule_https_only(t):
    """Viewers only over HTTPS (redirect or refuse), modern TLS with a custom certificate."""
    out = []
    for dname, d in distributions(t).items():
        cfg = props(d).get("DistributionConfig", {})
        for b in behaviors(d):
            if b.get("ViewerProtocolPolicy") not in HTTPS_ONLY:
                out.append(f"{dname}: ViewerProtocolPolicy {b.get('ViewerProtocolPolicy')} allows plain HTTP")
        if cfg.get("HttpVersion") != "http2and3":
            out.append(f"{dname}: HttpVersion is not http2and3")
        for _, k, v in walk(cfg.get("ViewerCertificate", {})):
            if k == "MinimumProtocolVersion" and v != "TLSv1.2_2021":
                out.append(f"{dname}: MinimumProtocolVersion {v}, want TLSv1.2_2021")
            if k == "SslSupportMethod" and v != "sni-only":
                out.append(f"{dname}: SslSupportMethod {v}, want sni-only")
    return out


def function_events(t: dict) -> dict:
    """{CloudFront Function logical id: the event types of its associations}."""
    out = {name: set() for name in resources(t, "AWS::CloudFront::Function")}
    for d in distributions(t).values():
        for b in behaviors(d):
            for a in b.get("FunctionAssociations", []) or []:
                for name in out:
                    if refers_to(a.get("FunctionARN"), name):
                        out[name].add(a.get("EventType"))
    return out


def rule_edge_functions(t):
    """viewer-request and viewer-response CloudFront Functions; then edge mode: origin-request
    Lambda@Edge by numbered version; regional mode: the origin group to the regional function."""
    out = []
    functions = resources(t, "AWS::CloudFront::Function")
    versions = resources(t, "AWS::Lambda::Version")
    lambdas = resources(t, "AWS::Lambda::Function")
    for name, f in functions.items():
        if props(f).get("FunctionConfig", {}).get("Runtime") != "cloudfront-js-2.0":
            out.append(f"{name}: runtime is not cloudfront-js-2.0")
    for dname, d in distributions(t).items():
        fa = behaviors(d)[0].get("FunctionAssociations", [])
        for event, why in (("viewer-request", "signature, policy, canonical query"), ("viewer-response", "Vary: Accept for fmt=auto")):
            if not any(a.get("EventType") == event and any(refers_to(a.get("FunctionARN"), n) for n in functions) for a in fa):
                out.append(f"{dname}: no {event} association of a template's CloudFront Function ({why})")
    if mode_of(t) == "regional":
        return out + regional_function_faults(t)
    for name, f in lambdas.items():
        p = props(f)
        if not str(p.get("Runtime", "")).startswith("nodejs"):
            out.append(f"{name}: Lambda@Edge needs a Node.js runtime, got {p.get('Runtime')}")
        if p.get("Architectures", ["x86_64"]) != ["x86_64"]:
            out.append(f"{name}: Lambda@Edge runs x86_64 only")
        if "Environment" in p:
            out.append(f"{name}: Lambda@Edge cannot have environment variables")
    for dname, d in distributions(t).items():
        b = behaviors(d)[0]
        la = b.get("LambdaFunctionAssociations", [])
        good = [
            a
            for a in la
            if a.get("EventType") == "origin-request" and any(refers_to(a.get("LambdaFunctionARN"), v) for v in versions)
        ]
        if not good:
            out.append(f"{dname}: no origin-request association of a numbered Lambda version")
        if any(a.get("IncludeBody") is not False for a in good):
            out.append(f"{dname}: origin-request association must have IncludeBody false")
    return out


def regional_function_faults(t) -> list:
    """Regional mode: an ordinary Lambda (provided.al2023, the Rust bootstrap) behind an IAM Function
    URL that only this distribution may call, reached by an origin group that asks the bucket
    first and the function on the bucket's 403/404; the viewer's URL forwarded, nothing else."""
    out = []
    lambdas = resources(t, "AWS::Lambda::Function")
    urls = resources(t, "AWS::Lambda::Url")
    permissions = resources(t, "AWS::Lambda::Permission")
    dists = list(distributions(t))
    if not lambdas:
        out.append("regional mode without a regional function")
    for name, f in lambdas.items():
        p = props(f)
        if (p.get("Runtime"), p.get("Handler")) != ("provided.al2023", "bootstrap"):
            out.append(f"{name}: the regional function is the Rust bootstrap on provided.al2023, got {p.get('Runtime')} / {p.get('Handler')}")
        if p.get("Architectures") not in ([{"Ref": "Architecture"}], ["arm64"], ["x86_64"]):
            out.append(f"{name}: Architectures is {p.get('Architectures')}, want the Architecture parameter")
        if not any(refers_to(props(u).get("TargetFunctionArn"), name) and props(u).get("AuthType") == "AWS_IAM" for u in urls.values()):
            out.append(f"{name}: no Function URL with AuthType AWS_IAM (NONE would let anyone call it past CloudFront)")
        granted = {}
        for pname, perm in permissions.items():
            q = props(perm)
            if not refers_to(q.get("FunctionName"), name):
                continue
            if q.get("Principal") != "cloudfront.amazonaws.com" or not any(refers_to(q.get("SourceArn"), dn) for dn in dists):
                out.append(f"{pname}: a permission for someone else than this distribution's CloudFront")
                continue
            granted[q.get("Action")] = q
        url_grant = granted.get("lambda:InvokeFunctionUrl")
        if url_grant is None or url_grant.get("FunctionUrlAuthType") != "AWS_IAM":
            out.append(f"{name}: CloudFront is not granted lambda:InvokeFunctionUrl (FunctionUrlAuthType AWS_IAM) for this distribution")
        invoke_grant = granted.get("lambda:InvokeFunction")
        if invoke_grant is None or invoke_grant.get("InvokedViaFunctionUrl") is not True:
            out.append(f"{name}: CloudFront is not granted lambda:InvokeFunction through the URL (InvokedViaFunctionUrl) for this distribution")
        extra = set(granted) - {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
        if extra:
            out.append(f"{name}: CloudFront is granted {sorted(extra)}")
    policies = resources(t, "AWS::CloudFront::OriginRequestPolicy")
    for dname, d in distributions(t).items():
        cfg = props(d).get("DistributionConfig", {})
        b = behaviors(d)[0]
        if b.get("LambdaFunctionAssociations"):
            out.append(f"{dname}: regional mode has no Lambda@Edge association")
        origins = {o.get("Id"): o for o in cfg.get("Origins", [])}
        groups = {g.get("Id"): g for g in (cfg.get("OriginGroups") or {}).get("Items", [])}
        group = groups.get(b.get("TargetOriginId"))
        if group is None:
            out.append(f"{dname}: the cache behavior does not target an origin group")
            continue
        members = [m.get("OriginId") for m in (group.get("Members") or {}).get("Items", [])]
        kinds = ["s3" if "S3OriginConfig" in origins.get(m, {}) else "function" if "CustomOriginConfig" in origins.get(m, {}) else None for m in members]
        if kinds != ["s3", "function"]:
            out.append(f"{dname}: origin group {group.get('Id')} must try the bucket first, then the function URL; has {members}")
        codes = set((group.get("FailoverCriteria") or {}).get("StatusCodes", {}).get("Items", []))
        if codes != FAILOVER_STATUSES:
            out.append(f"{dname}: origin group fails over on {sorted(codes)}, want {sorted(FAILOVER_STATUSES)} (the bucket's missing key)")
        chosen = [n for n in policies if refers_to(b.get("OriginRequestPolicyId"), n)]
        if not chosen:
            out.append(f"{dname}: no origin request policy forwarding {VIEWER_URL_HEADER}")
        for n in chosen:
            c = props(policies[n]).get("OriginRequestPolicyConfig", {})
            headers = c.get("HeadersConfig", {})
            if (headers.get("HeaderBehavior"), [h.lower() for h in headers.get("Headers", [])]) != ("whitelist", [VIEWER_URL_HEADER]):
                out.append(f"{n}: must forward exactly the header {VIEWER_URL_HEADER}")
            if c.get("CookiesConfig", {}).get("CookieBehavior") != "none" or c.get("QueryStringsConfig", {}).get("QueryStringBehavior") != "none":
                out.append(f"{n}: forwards cookies or query strings")
    return out


def rule_edge_role_least_privilege(t):
    """The function's role: trusted by lambda (+ edgelambda in edge mode); writes only
    _variants/*; no other services."""
    out = []
    allowed = {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
    roles = resources(t, "AWS::IAM::Role")
    for name, r in roles.items():
        p = props(r)
        trusted = set()
        for s in statements(p.get("AssumeRolePolicyDocument", {})):
            trusted |= set(as_list((s.get("Principal") or {}).get("Service", [])))
        want = {"lambda.amazonaws.com", "edgelambda.amazonaws.com"} if mode_of(t) == "edge" else {"lambda.amazonaws.com"}
        if trusted != want:
            out.append(f"{name}: trusted by {sorted(trusted)}, want {sorted(want)}")
        if p.get("ManagedPolicyArns"):
            out.append(f"{name}: managed policies are broader than needed")
        for pol in p.get("Policies", []) or []:
            for s in statements(pol.get("PolicyDocument", {})):
                actions = set(as_list(s.get("Action", [])))
                if not actions <= allowed:
                    out.append(f"{name}: grants {sorted(actions - allowed)}")
                if "s3:PutObject" in actions:
                    for res in as_list(s.get("Resource")):
                        text = res.get("Fn::Sub", "") if isinstance(res, dict) else str(res)
                        if not str(text).endswith("/_variants/*"):
                            out.append(f"{name}: s3:PutObject on {res}, want only _variants/*")
                for res in as_list(s.get("Resource")):
                    if res == "*":
                        out.append(f"{name}: statement {s.get('Sid')} on Resource '*'")
    return out


def rule_nosniff_on_every_response(t):
    """X-Content-Type-Options: nosniff on every response: each cache behavior has a response
    headers policy of the template that sets it, overriding whatever the origin sends."""
    out = []
    nosniff = [
        name
        for name, p in resources(t, "AWS::CloudFront::ResponseHeadersPolicy").items()
        if ((props(p).get("ResponseHeadersPolicyConfig", {}).get("SecurityHeadersConfig") or {}).get("ContentTypeOptions") or {}).get("Override")
        is True
    ]
    if not nosniff:
        out.append("no response headers policy sets SecurityHeadersConfig.ContentTypeOptions with Override: true")
    for dname, d in distributions(t).items():
        for b in behaviors(d):
            if not any(refers_to(b.get("ResponseHeadersPolicyId"), n) for n in nosniff):
                out.append(f"{dname}: a cache behavior has no response headers policy setting nosniff")
    return out


def alarm_metrics(alarm: dict) -> list:
    """(namespace, metric name, {dimension: value}) of each metric an alarm watches."""
    p = props(alarm)
    stats = [{"Namespace": p.get("Namespace"), "MetricName": p.get("MetricName"), "Dimensions": p.get("Dimensions")}]
    if "Metrics" in p:
        stats = [q.get("MetricStat", {}).get("Metric", {}) for q in p.get("Metrics") or [] if "MetricStat" in q]
    return [
        (m.get("Namespace"), m.get("MetricName"), {d.get("Name"): d.get("Value") for d in m.get("Dimensions") or []})
        for m in stats
    ]


def topic_condition(t: dict) -> str | None:
    """The condition that is true exactly when the alarm topic parameter is set."""
    want = {"Fn::Not": [{"Fn::Equals": [{"Ref": ALARM_TOPIC_PARAM}, ""]}]}
    return next((name for name, c in (t.get("Conditions") or {}).items() if c == want), None)


def rule_alarms(t):
    """The three alarms exist, on this distribution's CloudFront metrics; each has a name of its
    stack and a description naming the runbook, treats no data as OK, and notifies the alarm
    topic (ALARM and OK) exactly when the topic parameter is set."""
    out = []
    param = (t.get("Parameters") or {}).get(ALARM_TOPIC_PARAM)
    if param is None or param.get("Default") != "":
        out.append(f"no parameter {ALARM_TOPIC_PARAM} defaulting to empty (alarms without actions)")
    cond = topic_condition(t)
    if cond is None:
        out.append(f"no condition Not(Equals(Ref {ALARM_TOPIC_PARAM}, \"\"))")
    actions = {"Fn::If": [cond, [{"Ref": ALARM_TOPIC_PARAM}], {"Ref": "AWS::NoValue"}]}
    dists = list(distributions(t))
    lambdas = list(resources(t, "AWS::Lambda::Function"))
    regional = mode_of(t) == "regional"
    watched = []
    for name, a in resources(t, "AWS::CloudWatch::Alarm").items():
        p = props(a)
        if "${AWS::StackName}" not in str(p.get("AlarmName", "")):
            out.append(f"{name}: AlarmName does not name the stack (two stacks would collide)")
        description = str(p.get("AlarmDescription", ""))
        if len(description) < 80 or "docs/operations.md" not in description:
            out.append(f"{name}: AlarmDescription must say what happened and point to docs/operations.md")
        if p.get("TreatMissingData") != "notBreaching":
            out.append(f"{name}: TreatMissingData is {p.get('TreatMissingData')}, want notBreaching (no traffic is not a failure)")
        for key in ("AlarmActions", "OKActions"):
            if p.get(key) != actions:
                out.append(f"{name}: {key} must be the {ALARM_TOPIC_PARAM} topic when it is set, none otherwise")
        if p.get("InsufficientDataActions"):
            out.append(f"{name}: InsufficientDataActions would notify on every quiet period")
        metrics = alarm_metrics(a)
        for ns, metric, dims in metrics:
            if regional and ns == "AWS/Lambda":
                if set(dims) != {"FunctionName"} or not any(refers_to(dims["FunctionName"], f) for f in lambdas):
                    out.append(f"{name}: {metric} is not the regional function's (FunctionName = the template's)")
            elif ns != "AWS/CloudFront":
                out.append(f"{name}: watches {ns} {metric}; an alarm in us-east-1 sees every edge only in AWS/CloudFront")
            elif dims.get("Region") != "Global" or not any(refers_to(dims.get("DistributionId"), d) for d in dists):
                out.append(f"{name}: {metric} is not this distribution's (DistributionId = the template's, Region = Global)")
        watched.append({m for _, m, _ in metrics})
    for what, metrics in (REGIONAL_ALARMS if regional else REQUIRED_ALARMS).items():
        if metrics not in watched:
            out.append(f"no alarm on {what} ({' + '.join(sorted(metrics))})")
    return out


def expand_metrics(metrics: list) -> list:
    """Dashboard metric entries with CloudWatch's shorthands resolved: "..." repeats the previous
    entry's namespace, name and dimensions; "." repeats the value at the same position."""
    out, previous = [], []
    for entry in metrics:
        values = [v for v in entry if not isinstance(v, dict)]
        options = next((v for v in entry if isinstance(v, dict)), {})
        if values[:1] == ["..."]:
            values = previous + values[1:]
        else:
            values = [previous[i] if v == "." and i < len(previous) else v for i, v in enumerate(values)]
        if values:
            previous = values
        out.append((values, options))
    return out


def dashboard_body(d: dict):
    """The dashboard body parsed as JSON (the Fn::Sub text: ${...} sit inside JSON strings)."""
    body = props(d).get("DashboardBody")
    text = body.get("Fn::Sub") if isinstance(body, dict) else body
    text = text[0] if isinstance(text, list) else text
    return json.loads(text), text


def rule_dashboard(t):
    """A dashboard of this stack: valid JSON widgets on the 24-column grid, without overlaps;
    CloudFront metrics of this distribution and its functions in us-east-1; Lambda@Edge metrics of
    us-east-1.<the function> and imgedge metrics of the EMF contract, one line per EDGE_REGIONS
    Region (regional mode: the regional function's metrics and imgedge's, in us-east-1); an alarm
    widget with every alarm of the template."""
    out = []
    boards = resources(t, "AWS::CloudWatch::Dashboard")
    if not boards:
        out.append("no CloudWatch dashboard")
    dist_ids = list(distributions(t))
    lambdas = list(resources(t, "AWS::Lambda::Function"))
    function_names = {n.get("Fn::Sub", n) if isinstance(n, dict) else n for n in (props(f).get("Name") for f in resources(t, "AWS::CloudFront::Function").values())}
    alarms = set(resources(t, "AWS::CloudWatch::Alarm"))
    regional = mode_of(t) == "regional"
    known = set(t.get("Resources", {})) | set(t.get("Parameters", {}) or {}) | {"AWS::StackName", "AWS::Region", "AWS::AccountId", "AWS::Partition"}
    for name, d in boards.items():
        if "${AWS::StackName}" not in str(props(d).get("DashboardName", "")):
            out.append(f"{name}: DashboardName does not name the stack")
        try:
            body, text = dashboard_body(d)
        except (ValueError, TypeError, AttributeError) as e:
            out.append(f"{name}: DashboardBody is not a JSON Fn::Sub text ({e})")
            continue
        for ref in re.findall(r"\$\{([^}]+)\}", text):
            if ref.split(".")[0] not in known:
                out.append(f"{name}: ${{{ref}}} names nothing in the template")
        cells, listed_alarms = set(), set()
        for i, w in enumerate(body.get("widgets", [])):
            label = f"{name} widget {i} ({w.get('properties', {}).get('title') or w.get('type')})"
            x, y, width, height = (w.get(k) for k in ("x", "y", "width", "height"))
            if not all(isinstance(v, int) for v in (x, y, width, height)) or x < 0 or width < 1 or x + width > 24:
                out.append(f"{label}: position outside the 24-column grid")
                continue
            mine = {(cx, cy) for cx in range(x, x + width) for cy in range(y, y + height)}
            if mine & cells:
                out.append(f"{label}: overlaps another widget")
            cells |= mine
            kind, p = w.get("type"), w.get("properties", {})
            if kind == "alarm":
                arn = r"arn:\$\{AWS::Partition\}:cloudwatch:\$\{AWS::Region\}:\$\{AWS::AccountId\}:alarm:\$\{(\w+)\}"
                listed_alarms |= {m.group(1) for a in p.get("alarms", []) for m in [re.fullmatch(arn, a)] if m}
                continue
            if kind != "metric":
                if kind != "text":
                    out.append(f"{label}: widget type {kind}")
                continue
            if not p.get("region"):
                out.append(f"{label}: no region (metrics are read in one Region each)")
            regions_by_metric = {}
            for values, options in expand_metrics(p.get("metrics", [])):
                if "expression" in options:
                    continue
                if len(values) < 2 or len(values) % 2:
                    out.append(f"{label}: metric entry {values} is not namespace, name, dimension pairs")
                    continue
                ns, metric, dims = values[0], values[1], dict(zip(values[2::2], values[3::2]))
                region = options.get("region", p.get("region"))
                what = f"{label}: {ns} {metric}"
                if ns == "AWS/CloudFront":
                    if region != "us-east-1" or dims.get("Region") != "Global":
                        out.append(f"{what}: CloudFront metrics are read in us-east-1 with Region=Global")
                    if set(dims) == {"DistributionId", "Region"}:
                        if not any(dims["DistributionId"] == f"${{{d}}}" for d in dist_ids):
                            out.append(f"{what}: DistributionId is not the template's distribution")
                    elif set(dims) == {"FunctionName", "Region"}:
                        if dims["FunctionName"] not in function_names:
                            out.append(f"{what}: FunctionName is not one of the template's CloudFront Functions")
                    else:
                        out.append(f"{what}: dimensions {sorted(dims)}")
                    continue
                if ns == "AWS/Lambda" and regional:
                    if dims != {"FunctionName": dims.get("FunctionName")} or not any(dims.get("FunctionName") == f"${{{f}}}" for f in lambdas):
                        out.append(f"{what}: the regional function is FunctionName <the template's function>, got {dims}")
                elif ns == "AWS/Lambda":
                    if dims != {"FunctionName": dims.get("FunctionName")} or not any(
                        dims.get("FunctionName") == f"us-east-1.${{{f}}}" for f in lambdas
                    ):
                        out.append(f"{what}: a Lambda@Edge replica is FunctionName us-east-1.<the template's function>, got {dims}")
                elif ns == EMF_NAMESPACE:
                    if metric not in EMF_METRICS:
                        out.append(f"{what}: not a metric of the EMF contract {sorted(EMF_METRICS)}")
                    for k, v in dims.items():
                        if v not in EMF_DIMENSIONS.get(k, ()):
                            out.append(f"{what}: dimension {k}={v} is not in the EMF contract")
                    if len(dims) != 1:
                        out.append(f"{what}: the EMF dimension sets have one dimension each, got {sorted(dims)}")
                else:
                    out.append(f"{what}: namespace not charted by imgedge")
                    continue
                stat = options.get("stat", p.get("stat"))
                regions_by_metric.setdefault((ns, metric, tuple(sorted(dims.items())), stat), []).append(region)
            for (ns, metric, _, _), regions in regions_by_metric.items():
                if regional and regions != ["us-east-1"]:
                    out.append(f"{label}: {ns} {metric} is drawn for {regions}; the regional function and its metrics are in us-east-1")
                elif not regional and regions != EDGE_REGIONS:
                    out.append(f"{label}: {ns} {metric} is drawn for {regions}, want one line per Region of EDGE_REGIONS in order")
        if listed_alarms != alarms:
            out.append(f"{name}: the alarm widget lists {sorted(listed_alarms)}, the template has {sorted(alarms)}")
    return list(dict.fromkeys(out))  # a "..." line repeats its metric's fault: say it once


def rule_function_code(t, built: dict):
    """Each CloudFront Function's code is the placeholder of its event (template) or the built
    function of its event (rendered template); built = {event type: minified code}."""
    out = []
    events = function_events(t)
    for name, f in resources(t, "AWS::CloudFront::Function").items():
        code = props(f).get("FunctionCode", "")
        if len(events[name]) != 1 or not events[name] <= set(PLACEHOLDERS):
            out.append(f"{name}: associated with {sorted(map(str, events[name])) or 'no event'}; want one of {sorted(PLACEHOLDERS)}")
            continue
        (event,) = events[name]
        others = [p for e, p in PLACEHOLDERS.items() if e != event and p in code]
        if others:
            out.append(f"{name}: a {event} function holds the placeholder {others[0]} of another event")
        elif PLACEHOLDERS[event] in code:
            continue
        elif built.get(event) is None:
            out.append(f"{name}: inlined code but no built {event} function to compare with")
        elif code.strip() != built[event].strip():
            out.append(f"{name}: FunctionCode differs from the built {event} function (build.mjs)")
    return out


RULES = [
    rule_public_access_blocked,
    rule_bucket_hygiene,
    rule_origin_uses_oac,
    rule_bucket_policy_is_the_seeds,
    rule_no_star_principal,
    rule_no_wildcard_actions,
    rule_cache_key_is_the_url_api,
    rule_https_only,
    rule_edge_functions,
    rule_edge_role_least_privilege,
    rule_nosniff_on_every_response,
    rule_alarms,
    rule_dashboard,
]


def function_params(function_js: str) -> list:
    """The parameter names the CloudFront Function accepts (its NAMES line)."""
    m = re.search(r"var NAMES = '([^']*)'", function_js)
    return [n.strip() for n in m.group(1).split(",")] if m else []


def check(
    t: dict,
    function_js: str | None = None,
    function_source: str | None = None,
    response_js: str | None = None,
    mode: str | None = None,
) -> dict:
    """{rule name: [violations]} for every rule that fails, in `mode` or (None) in every mode of
    the template; with several modes each violation says which."""
    modes = [mode] if mode else template_modes(t)
    failures = {}
    for m in modes:
        tagged = f"[{m}] " if len(modes) > 1 else ""
        for name, found in check_mode(for_mode(t, m), function_js, function_source, response_js).items():
            failures.setdefault(name, []).extend(tagged + v for v in found)
    return failures


def check_mode(t: dict, function_js: str | None, function_source: str | None, response_js: str | None) -> dict:
    failures = {}
    for rule in RULES:
        found = rule(t)
        if found:
            failures[rule.__name__] = found
    found = rule_function_code(t, {"viewer-request": function_js, "viewer-response": response_js})
    source = function_source if function_source is not None else function_js
    if source is not None and function_params(source) != URL_API_PARAMS:
        found.append(f"the CloudFront Function accepts {function_params(source)}, not {URL_API_PARAMS}")
    if found:
        failures[rule_function_code.__name__] = found
    return failures


def main(argv: list) -> int:
    args = argv[1:]
    mode = None
    if "--mode" in args:
        i = args.index("--mode")
        mode = args[i + 1] if i + 1 < len(args) else ""
        del args[i : i + 2]
        if mode not in MODES:
            print(f"--mode must be one of {', '.join(MODES)}", file=sys.stderr)
            return 2
    files = {"--function": None, "--function-source": None, "--response-function": None}
    for flag in files:
        if flag in args:
            i = args.index(flag)
            files[flag] = Path(args[i + 1]).read_text(encoding="utf-8")
            del args[i : i + 2]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    failures = check(load(args[0]), files["--function"], files["--function-source"], files["--response-function"], mode)
    total = len(RULES) + 1
    for rule, found in failures.items():
        for v in found:
            print(f"FAIL {rule}: {v}")
    modes = mode or ", ".join(template_modes(load(args[0])))
    print(f"{args[0]} ({modes}): {total - len(failures)}/{total} policy rules pass")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
