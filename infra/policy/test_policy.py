"""The policy rules pass on the real template and fail, naming the right rule, on broken copies.

Run: python -m unittest discover -s infra/policy   (infra/test.sh does)

Each broken copy is made by a textual edit of infra/template.yaml that must match exactly
once, so a template change cannot silently turn a case into a no-op; the copy is written to a
temporary file and read back through the CloudFormation-aware loader, as the check does.
"""

import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import check_template as ct

INFRA = Path(__file__).resolve().parent.parent
TEMPLATE = INFRA / "template.yaml"
FUNCTION = INFRA / "cloudfront-function" / "viewer-request.js"

# (what is broken, old text, new text, the rule that must fail)
BREAKAGES = [
    ("public policy allowed", "BlockPublicPolicy: true", "BlockPublicPolicy: false", "rule_public_access_blocked"),
    ("public ACLs honoured", "IgnorePublicAcls: true", "IgnorePublicAcls: false", "rule_public_access_blocked"),
    (
        "public-read ACL",
        "      BucketName: !Ref BucketName\n",
        "      BucketName: !Ref BucketName\n      AccessControl: PublicRead\n",
        "rule_public_access_blocked",
    ),
    ("ACLs enabled", "ObjectOwnership: BucketOwnerEnforced", "ObjectOwnership: ObjectWriter", "rule_bucket_hygiene"),
    ("variants never expire", "Prefix: _variants/", "Prefix: variants/", "rule_bucket_hygiene"),
    (
        "origin without OAC",
        "            OriginAccessControlId: !GetAtt OriginAccessControl.Id\n",
        "",
        "rule_origin_uses_oac",
    ),
    (
        "OAC that does not sign",
        "OriginAccessControlOriginType: s3\n        SigningBehavior: always",
        "OriginAccessControlOriginType: s3\n        SigningBehavior: no-override",
        "rule_origin_uses_oac",
    ),
    (
        "star principal in the bucket policy",
        "            Principal:\n              Service: cloudfront.amazonaws.com\n            Action: s3:GetObject\n",
        "            Principal: \"*\"\n            Action: s3:GetObject\n",
        "rule_no_star_principal",
    ),
    (
        "AWS star principal in the bucket policy",
        "            Principal:\n              Service: cloudfront.amazonaws.com\n            Action: s3:ListBucket\n",
        "            Principal:\n              AWS: \"*\"\n            Action: s3:ListBucket\n",
        "rule_bucket_policy_is_the_seeds",
    ),
    (
        "bucket policy without SourceArn",
        "            Action: s3:ListBucket\n            Resource: !GetAtt ImageBucket.Arn\n            Condition:\n              StringEquals:\n",
        "            Action: s3:ListBucket\n            Resource: !GetAtt ImageBucket.Arn\n            Condition:\n              StringLike:\n",
        "rule_bucket_policy_is_the_seeds",
    ),
    (
        "bucket policy for another distribution",
        '                AWS:SourceArn: !Sub "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${Distribution}"\n          - Sid: AllowCloudFrontListBucketForMisses',
        '                AWS:SourceArn: "arn:aws:cloudfront::111122223333:distribution/EOTHER"\n          - Sid: AllowCloudFrontListBucketForMisses',
        "rule_bucket_policy_is_the_seeds",
    ),
    (
        "s3:* in the bucket policy",
        "            Action: s3:GetObject\n            Resource: !Sub \"${ImageBucket.Arn}/*\"\n            Condition:",
        "            Action: s3:*\n            Resource: !Sub \"${ImageBucket.Arn}/*\"\n            Condition:",
        "rule_no_wildcard_actions",
    ),
    ("s3:* in the edge role", "                Action: s3:PutObject", "                Action: s3:*", "rule_no_wildcard_actions"),
    ("extra query parameter in the cache key", "QueryStrings: [w, h, fit, fmt, q, dpr, bg]", "QueryStrings: [w, h, fit, fmt, q, dpr, bg, v]", "rule_cache_key_is_the_url_api"),
    ("missing query parameter in the cache key", "QueryStrings: [w, h, fit, fmt, q, dpr, bg]", "QueryStrings: [w, h, fit, fmt, q, dpr]", "rule_cache_key_is_the_url_api"),
    ("all query strings in the cache key", "QueryStringBehavior: whitelist", "QueryStringBehavior: all", "rule_cache_key_is_the_url_api"),
    ("Accept in the cache key", "            HeaderBehavior: none", "            HeaderBehavior: whitelist\n            Headers: [Accept]", "rule_cache_key_is_the_url_api"),
    ("plain HTTP allowed", "ViewerProtocolPolicy: redirect-to-https", "ViewerProtocolPolicy: allow-all", "rule_https_only"),
    ("old TLS", "MinimumProtocolVersion: TLSv1.2_2021", "MinimumProtocolVersion: TLSv1", "rule_https_only"),
    ("$LATEST associated", "LambdaFunctionARN: !Ref EdgeFunctionVersion", "LambdaFunctionARN: !GetAtt EdgeFunction.Arn", "rule_edge_functions"),
    ("body sent to Lambda@Edge", "IncludeBody: false", "IncludeBody: true", "rule_edge_functions"),
    ("arm64 at the edge", "Architectures: !If [IsEdge, [x86_64],", "Architectures: !If [IsEdge, [arm64],", "rule_edge_functions"),
    ("CloudFront Function not associated", "EventType: viewer-request", "EventType: viewer-response", "rule_edge_functions"),
    (
        "no Vary function",
        "            - EventType: viewer-response\n              FunctionARN: !GetAtt ViewerResponseFunction.FunctionARN\n",
        "",
        "rule_edge_functions",
    ),
    ("role not trusted by edgelambda", "                  - edgelambda.amazonaws.com\n", "", "rule_edge_role_least_privilege"),
    (
        "role writes masters",
        'Resource: !Sub "${ImageBucket.Arn}/_variants/*"',
        'Resource: !Sub "${ImageBucket.Arn}/*"',
        "rule_edge_role_least_privilege",
    ),
    ("role may delete", "                Action: s3:PutObject", "                Action: [s3:PutObject, s3:DeleteObject]", "rule_edge_role_least_privilege"),
    ("no response headers policy", "          ResponseHeadersPolicyId: !Ref ResponseHeadersPolicy\n", "", "rule_nosniff_on_every_response"),
    (
        "nosniff loses to the origin's header",
        "          ContentTypeOptions:\n            Override: true",
        "          ContentTypeOptions:\n            Override: false",
        "rule_nosniff_on_every_response",
    ),
    (
        "no nosniff in the policy",
        "        SecurityHeadersConfig:\n          ContentTypeOptions:\n            Override: true\n",
        "        SecurityHeadersConfig:\n          FrameOptions:\n            FrameOption: DENY\n            Override: true\n",
        "rule_nosniff_on_every_response",
    ),
    # Alarms (docs/operations.md)
    (
        "alarm without a description",
        '      AlarmDescription: !Sub "imgedge ${AWS::StackName}: more than 5% of viewer requests',
        '      Description: !Sub "imgedge ${AWS::StackName}: more than 5% of viewer requests',
        "rule_alarms",
    ),
    (
        "alarm always notifying one topic",
        "      EvaluationPeriods: 1\n      Threshold: 1\n      ComparisonOperator: GreaterThanOrEqualToThreshold\n      TreatMissingData: notBreaching\n"
        "      AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]\n",
        "      EvaluationPeriods: 1\n      Threshold: 1\n      ComparisonOperator: GreaterThanOrEqualToThreshold\n      TreatMissingData: notBreaching\n"
        "      AlarmActions: [arn:aws:sns:us-east-1:111122223333:someone-else]\n",
        "rule_alarms",
    ),
    (
        "alarm silent when it recovers",
        "      TreatMissingData: notBreaching\n      AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]\n"
        "      OKActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]\n\n  # The origin-request",
        "      TreatMissingData: notBreaching\n      AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]\n\n  # The origin-request",
        "rule_alarms",
    ),
    (
        "alarm on another distribution",
        "      MetricName: 5xxErrorRate\n      Dimensions:\n        - Name: DistributionId\n          Value: !Ref Distribution\n",
        "      MetricName: 5xxErrorRate\n      Dimensions:\n        - Name: DistributionId\n          Value: E2OTHERDIST\n",
        "rule_alarms",
    ),
    ("no throttle alarm", "      MetricName: LambdaLimitExceededErrors\n", "      MetricName: LambdaExecutionError\n", "rule_alarms"),
    (
        "alarms notify a built-in topic by default",
        '    Default: ""\n    AllowedPattern: "^(|arn:aws[a-z-]*:sns:',
        '    Default: "arn:aws:sns:us-east-1:111122223333:ops"\n    AllowedPattern: "^(|arn:aws[a-z-]*:sns:',
        "rule_alarms",
    ),
    # Dashboard
    (
        "no dashboard",
        "    Type: AWS::CloudWatch::Dashboard\n    Condition: IsEdge\n",
        "    Type: AWS::CloudWatch::AnomalyDetector\n    Condition: IsEdge\n",
        "rule_dashboard",
    ),
    (
        "CloudFront metrics read outside us-east-1",
        '"title": "Requests", "region": "us-east-1"',
        '"title": "Requests", "region": "eu-west-1"',
        "rule_dashboard",
    ),
    (
        "a Region missing from a per-Region graph",
        ',\n           ["...", {"region": "sa-east-1", "label": "sa-east-1"}]\n          ]}}\n        ]}',
        "\n          ]}}\n        ]}",
        "rule_dashboard",
    ),
    (
        "Lambda@Edge metrics without the us-east-1. prefix",
        '["AWS/Lambda", "Invocations", "FunctionName", "us-east-1.${EdgeFunction}"',
        '["AWS/Lambda", "Invocations", "FunctionName", "${EdgeFunction}"',
        "rule_dashboard",
    ),
    ("EMF metric outside the contract", '["imgedge", "TotalMs", "Outcome", "built"', '["imgedge", "TotalTime", "Outcome", "built"', "rule_dashboard"),
    ("EMF outcome outside the contract", '["imgedge", "Requests", "Outcome", "reused"', '["imgedge", "Requests", "Outcome", "cached"', "rule_dashboard"),
    ("an alarm missing from the alarm widget", '           "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:${EdgeFunctionErrorsAlarm}",\n', "", "rule_dashboard"),
    ("dashboard body not JSON", '"title": "Duration p99 (ms)", "region"', '"title": "Duration p99 (ms)" "region"', "rule_dashboard"),
    ("overlapping widgets", '{"type": "metric", "x": 8, "y": 4,', '{"type": "metric", "x": 4, "y": 4,', "rule_dashboard"),
    # Mode regional (docs/deploy.md#modes)
    ("function URL open to anyone", "      AuthType: AWS_IAM\n", "      AuthType: NONE\n", "rule_edge_functions"),
    ("no InvokeFunction through the URL", "      InvokedViaFunctionUrl: true\n", "", "rule_edge_functions"),
    ("InvokeFunctionUrl without IAM auth", "      FunctionUrlAuthType: AWS_IAM\n", "", "rule_edge_functions"),
    (
        "function URL callable by another distribution",
        '      FunctionUrlAuthType: AWS_IAM\n      SourceArn: !Sub "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${Distribution}"',
        '      FunctionUrlAuthType: AWS_IAM\n      SourceArn: "arn:aws:cloudfront::111122223333:distribution/EOTHER"',
        "rule_edge_functions",
    ),
    ("origin group fails over on a 500", "                    Items: [403, 404]", "                    Items: [403, 500]", "rule_edge_functions"),
    (
        "function tried before the bucket",
        "                    - OriginId: images\n                    - OriginId: regional-function\n",
        "                    - OriginId: regional-function\n                    - OriginId: images\n",
        "rule_edge_functions",
    ),
    (
        "regional function on a Node runtime",
        "Runtime: !If [IsEdge, nodejs22.x, provided.al2023]",
        "Runtime: !If [IsEdge, nodejs22.x, nodejs22.x]",
        "rule_edge_functions",
    ),
    ("more than the viewer URL forwarded", "Headers: [x-imgedge-viewer-url]", "Headers: [x-imgedge-viewer-url, Authorization]", "rule_edge_functions"),
    ("function URL signed as if it were S3", "OriginAccessControlOriginType: lambda\n", "OriginAccessControlOriginType: s3\n", "rule_origin_uses_oac"),
    (
        "regional role trusted by edgelambda",
        "                - - lambda.amazonaws.com\n            Action: sts:AssumeRole",
        "                - - lambda.amazonaws.com\n                  - edgelambda.amazonaws.com\n            Action: sts:AssumeRole",
        "rule_edge_role_least_privilege",
    ),
    (
        "regional alarm on another function",
        "      MetricName: Throttles\n      Dimensions:\n        - Name: FunctionName\n          Value: !Ref EdgeFunction\n",
        "      MetricName: Throttles\n      Dimensions:\n        - Name: FunctionName\n          Value: another-function\n",
        "rule_alarms",
    ),
    (
        "regional function charted as a Lambda@Edge replica",
        '["AWS/Lambda", "Invocations", "FunctionName", "${EdgeFunction}"',
        '["AWS/Lambda", "Invocations", "FunctionName", "us-east-1.${EdgeFunction}"',
        "rule_dashboard",
    ),
]


def broken_copy(old: str, new: str) -> dict:
    text = TEMPLATE.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"the edit must match once, matched {text.count(old)}: {old!r}"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text.replace(old, new))
    try:
        return ct.load(f.name)
    finally:
        Path(f.name).unlink()


class PolicyRules(unittest.TestCase):
    def test_the_template_passes_every_rule(self):
        self.assertEqual(ct.check(ct.load(TEMPLATE), FUNCTION.read_text()), {})

    def test_both_modes_are_checked_and_each_fault_names_its_mode(self):
        t = ct.load(TEMPLATE)
        self.assertEqual(ct.template_modes(t), ["edge", "regional"])
        regional = ct.for_mode(t, "regional")
        self.assertIn("RegionalFunctionUrl", regional["Resources"])
        self.assertNotIn("EdgeFunctionVersion", regional["Resources"])
        self.assertEqual(regional["Resources"]["EdgeFunction"]["Properties"]["Runtime"], "provided.al2023")
        edge = ct.for_mode(t, "edge")
        self.assertNotIn("RegionalFunctionUrl", edge["Resources"])
        self.assertNotIn("Environment", edge["Resources"]["EdgeFunction"]["Properties"])
        origins = edge["Resources"]["Distribution"]["Properties"]["DistributionConfig"]["Origins"]
        self.assertEqual([o["Id"] for o in origins], ["images"], "the NoValue branch leaves no item")
        failures = ct.check(broken_copy("      AuthType: AWS_IAM\n", "      AuthType: NONE\n"))
        self.assertTrue(all(v.startswith("[regional] ") for v in failures["rule_edge_functions"]), failures)

    def test_each_broken_copy_fails_its_rule(self):
        for what, old, new, rule in BREAKAGES:
            with self.subTest(what):
                failures = ct.check(broken_copy(old, new))
                self.assertIn(rule, failures, f"{what}: {failures}")

    def test_every_rule_is_exercised_by_a_breakage(self):
        broken = {rule for *_, rule in BREAKAGES}
        self.assertEqual(broken, {r.__name__ for r in ct.RULES})

    def test_an_empty_template_fails_instead_of_passing_vacuously(self):
        failures = ct.check({"Resources": {}})
        for rule in ("rule_public_access_blocked", "rule_origin_uses_oac", "rule_bucket_policy_is_the_seeds", "rule_cache_key_is_the_url_api"):
            self.assertIn(rule, failures)

    def test_inlined_function_code_must_be_the_source(self):
        text = TEMPLATE.read_text(encoding="utf-8").replace(
            "        // @@VIEWER_REQUEST_JS@@", "        function handler(event) { return event.request; }"
        )
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(text)
        try:
            failures = ct.check(ct.load(f.name), FUNCTION.read_text())
        finally:
            Path(f.name).unlink()
        self.assertIn("rule_function_code", failures)

    def test_each_function_is_compared_with_the_code_of_its_event(self):
        """Inlined as deploy.sh renders it: passes; the two functions' code swapped: fails."""
        request, response = "function handler(e) { return e.request; }", "function handler(e) { return e.response; }"
        template = TEMPLATE.read_text(encoding="utf-8")
        for (req_code, resp_code), ok in (((request, response), True), ((response, request), False)):
            text = template.replace("// @@VIEWER_REQUEST_JS@@", req_code).replace("// @@VIEWER_RESPONSE_JS@@", resp_code)
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
                f.write(text)
            try:
                failures = ct.check(ct.load(f.name), request, FUNCTION.read_text(), response)
            finally:
                Path(f.name).unlink()
            self.assertEqual("rule_function_code" not in failures, ok, failures)
        swapped = template.replace("@@VIEWER_REQUEST_JS@@", "@@SWAP@@").replace("@@VIEWER_RESPONSE_JS@@", "@@VIEWER_REQUEST_JS@@")
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(swapped.replace("@@SWAP@@", "@@VIEWER_RESPONSE_JS@@"))
        try:
            self.assertIn("rule_function_code", ct.check(ct.load(f.name)), "placeholders swapped")
        finally:
            Path(f.name).unlink()

    def test_the_loader_reads_short_tags_as_cloudformation_does(self):
        t = ct.load(TEMPLATE)
        dist = t["Resources"]["Distribution"]["Properties"]["DistributionConfig"]
        self.assertEqual(dist["Origins"][0]["OriginAccessControlId"], {"Fn::GetAtt": ["OriginAccessControl", "Id"]})
        self.assertEqual(t["Resources"]["EdgeFunctionVersion"]["Properties"]["FunctionName"], {"Ref": "EdgeFunction"})
        self.assertIn("Fn::If", dist["ViewerCertificate"])

    def test_the_command_line_exits_nonzero_on_a_broken_template(self):
        text = TEMPLATE.read_text(encoding="utf-8").replace("BlockPublicAcls: true", "BlockPublicAcls: false")
        with tempfile.TemporaryDirectory() as d:
            broken = Path(d) / "broken.yaml"
            broken.write_text(text)
            run = subprocess.run(
                [sys.executable, str(Path(ct.__file__)), str(broken)], capture_output=True, text=True, check=False
            )
        self.assertEqual(run.returncode, 1, run.stdout + run.stderr)
        self.assertIn("FAIL rule_public_access_blocked", run.stdout)


if __name__ == "__main__":
    unittest.main()
