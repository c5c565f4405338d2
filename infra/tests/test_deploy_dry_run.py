"""infra/deploy.sh --dry-run: the AWS CLI calls each command makes, in order, and its errors.

Run: python -m unittest discover -s infra/tests   (infra/test.sh does)

The dry run must not touch AWS: an `aws` that records any call and fails is first on PATH,
and each test checks it was never called. Printed calls are read back with shlex, as a
shell would read them.
"""

import hashlib
import json
import os
import pty
import re
import shlex
import shutil
import subprocess
import tempfile
import unittest
import zipfile
from pathlib import Path

import yaml

INFRA = Path(__file__).resolve().parent.parent
DEPLOY = INFRA / "deploy.sh"
ACCOUNT = "123456789012"  # deploy.sh's dry-run placeholder for the account id
FIXTURES = INFRA.parent / "tests" / "fixtures"
SIGNATURES = json.loads((FIXTURES / "signature-cases.json").read_text(encoding="utf-8"))
SECRETS = list(SIGNATURES["keys"].values())
# A first deploy's calls up to the stack, in order, in either mode: who am I, is the image
# bucket new, package, the artifact bucket (created: absent in a dry run), the zip, the stack.
DEPLOY_PLAN = [
    ("sts", "get-caller-identity"),
    ("cloudformation", "describe-stacks"),
    ("s3api", "head-bucket"),
    ("env", "package.sh"),
    ("s3api", "head-bucket"),
    ("s3api", "create-bucket"),
    ("s3api", "put-public-access-block"),
    ("s3api", "head-object"),
    ("s3api", "put-object"),
    ("cloudformation", "deploy"),
]


class DryRun(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        tmp = Path(self.tmp.name)
        self.aws_log = tmp / "aws-called"
        guard = tmp / "bin" / "aws"
        guard.parent.mkdir()
        guard.write_text(f'#!/bin/sh\necho "$@" >> {shlex.quote(str(self.aws_log))}\nexit 99\n')
        guard.chmod(0o755)
        # No AWS settings at all (no region, credentials or config): a dry run needs none.
        self.env = {
            "PATH": f"{guard.parent}:/usr/bin:/bin",
            "HOME": str(tmp),
        }

    def run_deploy(self, *args, env=None, ok=True):
        run = subprocess.run(
            ["bash", str(DEPLOY), *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.assertFalse(self.aws_log.exists(), f"the dry run called aws: {self.aws_log.read_text() if self.aws_log.exists() else ''}")
        if ok:
            self.assertEqual(run.returncode, 0, run.stderr)
        return run

    def calls(self, run):
        """Printed calls as argv lists (lines starting with '+ ')."""
        return [shlex.split(line[2:]) for line in run.stdout.splitlines() if line.startswith("+ ")]

    @staticmethod
    def op(argv):
        """(service, operation) of an aws call, or the program for other commands."""
        if argv[0] == "aws":
            return (argv[1], argv[2])
        if argv[0] == "env":
            return ("env", Path([a for a in argv[1:] if "=" not in a][0]).name)
        return (argv[0],)

    @staticmethod
    def flag(argv, name):
        return argv[argv.index(name) + 1]

    def test_deploy_makes_the_expected_calls_in_order(self):
        run = self.run_deploy("--dry-run", "deploy")
        calls = self.calls(run)
        self.assertEqual(
            [self.op(c) for c in calls],
            DEPLOY_PLAN + [("cloudformation", "describe-stacks"), ("cloudformation", "describe-stacks")],
        )
        for c in calls:
            if c[0] == "aws":
                self.assertEqual(self.flag(c, "--region"), "us-east-1", c)
        self.assertEqual(self.flag(calls[2], "--bucket"), f"imgedge-images-{ACCOUNT}", "the image bucket must be new")
        package = calls[3]
        self.assertIn(f"IMGEDGE_BUCKET=imgedge-images-{ACCOUNT}", package)
        self.assertIn("IMGEDGE_REGION=us-east-1", package)
        self.assertFalse(any(a.startswith("IMGEDGE_MAX_") for a in package))

        artifact_bucket = f"imgedge-artifacts-{ACCOUNT}"
        put = calls[8]
        self.assertEqual(self.flag(put, "--bucket"), artifact_bucket)
        self.assertTrue(self.flag(put, "--body").endswith("dist/edge-function.zip"))
        key = self.flag(put, "--key")

        deploy = calls[9]
        self.assertEqual(self.flag(deploy, "--stack-name"), "imgedge")
        self.assertEqual(self.flag(deploy, "--capabilities"), "CAPABILITY_IAM")
        self.assertIn("--no-fail-on-empty-changeset", deploy)
        overrides = dict(a.split("=", 1) for a in deploy[deploy.index("--parameter-overrides") + 1 :] if "=" in a)
        template = yaml.load((INFRA / "template.yaml").read_text(), Loader=yaml.BaseLoader)
        self.assertEqual(set(overrides), set(template["Parameters"]), "every template parameter is passed, no other")
        self.assertEqual(overrides["BucketName"], f"imgedge-images-{ACCOUNT}")
        self.assertEqual(overrides["ArtifactBucket"], artifact_bucket)
        self.assertEqual(overrides["ArtifactKey"], key)
        self.assertEqual(overrides["PriceClass"], "PriceClass_100")
        self.assertEqual(overrides["AlternateDomainNames"], "")

        rendered = Path(self.flag(deploy, "--template-file"))
        self.assertTrue(rendered.exists(), "the rendered template is written even in a dry run")
        # The minified build (build.mjs), not the commented source: the entry point survives,
        # the source's comments and variable names do not.
        self.assertIn("async function handler(", rendered.read_text())
        self.assertNotIn("var NAMES =", rendered.read_text())
        self.assertNotIn("@@VIEWER_REQUEST_JS@@", rendered.read_text())

    def test_settings_reach_the_package_script_and_the_stack(self):
        env = {
            "IMGEDGE_STACK": "Photos",
            "IMGEDGE_BUCKET": "my-image-bucket-2025",
            "IMGEDGE_MAX_PIXELS": "20000000",
            "IMGEDGE_MAX_BYTES": "1048576",
            "IMGEDGE_PRICE_CLASS": "PriceClass_All",
            "IMGEDGE_MEMORY_MB": "2048",
            "IMGEDGE_DOMAINS": "img.example.com,cdn.example.com",
            "IMGEDGE_CERT_ARN": f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/abc-123",
        }
        calls = self.calls(self.run_deploy("--dry-run", "deploy", env=env))
        package = next(c for c in calls if c[0] == "env")
        for arg in ("IMGEDGE_BUCKET=my-image-bucket-2025", "IMGEDGE_MAX_PIXELS=20000000", "IMGEDGE_MAX_BYTES=1048576"):
            self.assertIn(arg, package)
        deploy = next(c for c in calls if c[:3] == ["aws", "cloudformation", "deploy"])
        self.assertEqual(self.flag(deploy, "--stack-name"), "Photos")
        for arg in (
            "BucketName=my-image-bucket-2025",
            "ArtifactBucket=photos-artifacts-123456789012",
            "PriceClass=PriceClass_All",
            "MemorySize=2048",
            "AlternateDomainNames=img.example.com,cdn.example.com",
            f"AcmCertificateArn=arn:aws:acm:us-east-1:{ACCOUNT}:certificate/abc-123",
        ):
            self.assertIn(arg, deploy)

    def test_a_prebuilt_zip_skips_packaging_and_is_named_by_content(self):
        zip_path = Path(self.tmp.name) / "fn.zip"
        with zipfile.ZipFile(zip_path, "w") as z:
            z.writestr("index.mjs", "export const handler = async () => ({});\n")
        calls = self.calls(self.run_deploy("--dry-run", "deploy", env={"IMGEDGE_ZIP": str(zip_path)}))
        self.assertFalse(any(c[0] == "env" for c in calls), "package.sh is not run")
        put = next(c for c in calls if c[:3] == ["aws", "s3api", "put-object"])
        digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()
        self.assertEqual(self.flag(put, "--key"), f"edge-function/{digest}.zip")
        self.assertEqual(self.flag(put, "--body"), str(zip_path))

    def test_invalidate_looks_up_the_distribution_then_invalidates_the_paths(self):
        calls = self.calls(self.run_deploy("--dry-run", "invalidate", "/outputs/a.png", "/outputs/b/*"))
        self.assertEqual(
            [self.op(c) for c in calls],
            [("sts", "get-caller-identity"), ("cloudformation", "describe-stacks"), ("cloudfront", "create-invalidation")],
        )
        self.assertIn("DistributionId", self.flag(calls[1], "--query"))
        inv = calls[2]
        paths = inv[inv.index("--paths") + 1 : inv.index("--query")]
        self.assertEqual(paths, ["/outputs/a.png", "/outputs/b/*"])
        self.assertEqual(self.flag(inv, "--distribution-id"), "<DistributionId>")

    def test_invalidate_refuses_bad_paths(self):
        for args in ([], ["outputs/a.png"]):
            run = self.run_deploy("--dry-run", "invalidate", *args, ok=False)
            self.assertEqual(run.returncode, 1)
            self.assertIn("deploy.sh:", run.stderr)
            self.assertEqual(self.calls(run), [], "nothing is called for a bad request")

    def test_outputs_and_destroy(self):
        calls = self.calls(self.run_deploy("--dry-run", "outputs"))
        self.assertEqual([self.op(c) for c in calls], [("sts", "get-caller-identity"), ("cloudformation", "describe-stacks")])
        run = self.run_deploy("--dry-run", "destroy")
        calls = self.calls(run)
        self.assertEqual(
            [self.op(c) for c in calls],
            [
                ("sts", "get-caller-identity"),
                ("cloudformation", "describe-stacks"),
                ("cloudformation", "describe-stack-resources"),
                ("cloudformation", "delete-stack"),
                ("cloudformation", "wait"),
            ],
        )
        query = self.flag(calls[1], "--query")
        self.assertIn("OutputKey=='BucketName'", query)
        self.assertIn("ParameterKey=='ArtifactBucket'", query)
        self.assertEqual(calls[4][3], "stack-delete-complete")
        self.assertIn("replicas", run.stderr, "destroy explains the Lambda@Edge delay")
        # Bucket names come from the stack (placeholders in a dry run), never derived here.
        self.assertIn("s3://<BucketName>", run.stderr)
        self.assertIn("s3://<ArtifactBucket>", run.stderr)
        self.assertNotIn(f"imgedge-images-{ACCOUNT}", run.stderr)
        self.assertNotIn(f"imgedge-artifacts-{ACCOUNT}", run.stderr)
        self.assertIn("will be deleted", run.stderr)
        self.assertIn("asks for confirmation", run.stderr)

    def test_no_aws_environment_at_all(self):
        """`env -i PATH=… HOME=<empty dir>`: every command's dry run works and goes to us-east-1."""
        with tempfile.TemporaryDirectory() as home:
            for args in (["deploy"], ["outputs"], ["invalidate", "/outputs/*"], ["destroy"]):
                run = subprocess.run(
                    ["env", "-i", f"PATH={self.env['PATH']}", f"HOME={home}", "bash", str(DEPLOY), "--dry-run", *args],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                self.assertEqual(run.returncode, 0, f"{args}: {run.stderr}")
                self.assertFalse(self.aws_log.exists(), "the dry run called aws")
                calls = self.calls(run)
                self.assertGreaterEqual(len(calls), 2, args)
                for c in calls:
                    if c[0] == "aws":
                        self.assertEqual(self.flag(c, "--region"), "us-east-1", c)
                self.assertNotIn("note:", run.stderr, "no region in the environment, nothing to note")

    def test_region_is_pinned_to_us_east_1(self):
        for env in ({"AWS_REGION": "eu-west-1"}, {"AWS_DEFAULT_REGION": "ap-south-1"}, {"AWS_REGION": "us-east-1"}):
            run = self.run_deploy("--dry-run", "deploy", env=env)
            calls = [c for c in self.calls(run) if c[0] == "aws"]
            self.assertTrue(calls)
            self.assertTrue(all(self.flag(c, "--region") == "us-east-1" for c in calls), env)
            package = next(c for c in self.calls(run) if c[0] == "env")
            self.assertIn("IMGEDGE_REGION=us-east-1", package)
            other = next(iter(env.values()))
            if other == "us-east-1":
                self.assertNotIn("note:", run.stderr)
            else:
                self.assertIn(f"uses --region us-east-1, not {other}", run.stderr)

    def test_every_bucket_call_checks_the_owner(self):
        """Bucket names are global and ours are guessable: each S3 call names the account that
        must own the bucket. CreateBucket has no such parameter; it sits between an owner-checked
        head-bucket and an owner-checked put-public-access-block of the same bucket."""
        zip_path = Path(self.tmp.name) / "fn.zip"
        with zipfile.ZipFile(zip_path, "w") as z:
            z.writestr("index.mjs", "export const handler = async () => ({});\n")
        envs = [{}, {"IMGEDGE_ZIP": str(zip_path), "IMGEDGE_ARTIFACT_BUCKET": "my-artifacts", "IMGEDGE_BUCKET": "my-images"}]
        s3_calls = 0
        for env in envs:
            for args in (["deploy"], ["invalidate", "/outputs/*"], ["outputs"], ["destroy"]):
                calls = self.calls(self.run_deploy("--dry-run", *args, env=env))
                for i, c in enumerate(calls):
                    if c[0] != "aws" or c[1] not in ("s3", "s3api"):
                        continue
                    s3_calls += 1
                    self.assertEqual(c[1], "s3api", f"high-level s3 commands cannot check the owner: {c}")
                    if c[2] == "create-bucket":
                        bucket = self.flag(c, "--bucket")
                        before, after = calls[i - 1], calls[i + 1]
                        self.assertEqual((before[2], self.flag(before, "--bucket")), ("head-bucket", bucket))
                        self.assertEqual(self.flag(before, "--expected-bucket-owner"), ACCOUNT)
                        self.assertEqual((after[2], self.flag(after, "--bucket")), ("put-public-access-block", bucket))
                        continue
                    self.assertIn("--expected-bucket-owner", c, c)
                    self.assertEqual(self.flag(c, "--expected-bucket-owner"), ACCOUNT, c)
        # Per deploy: head-bucket ×2, create-bucket, put-public-access-block, head-object, put-object.
        self.assertEqual(s3_calls, 2 * 6)

    def test_refuses_a_shell_it_does_not_support(self):
        """The guard runs first, in plain sh. A non-bash shell has no BASH_VERSION; bash itself
        overrides one from the environment, so an old bash is played by dash with BASH_VERSION set."""
        dash = shutil.which("dash") or shutil.which("busybox")
        if not dash:
            self.skipTest("no dash or busybox sh to run the guard under")
        argv = [dash, str(DEPLOY)] if dash.endswith("dash") else [dash, "sh", str(DEPLOY)]
        for version, shown in ((None, "not bash"), ("3.2.57(1)-release", "3.2.57"), ("4.3.48(1)-release", "4.3.48")):
            env = dict(self.env)
            if version:
                env["BASH_VERSION"] = version
            run = subprocess.run([*argv, "--dry-run", "deploy"], env=env, capture_output=True, text=True, timeout=60, check=False)
            self.assertEqual(run.returncode, 1, run.stderr)
            self.assertIn("needs bash 4.4 or newer", run.stderr)
            self.assertIn(shown, run.stderr)
            self.assertEqual(run.stdout, "", "nothing runs before the guard")
        # 4.4 passes the guard (dash then stops at bash-only syntax: proof the guard let it by).
        env = {**self.env, "BASH_VERSION": "4.4.23(1)-release"}
        run = subprocess.run([*argv, "--dry-run", "deploy"], env=env, capture_output=True, text=True, timeout=60, check=False)
        self.assertNotIn("needs bash 4.4", run.stderr)

    # --- --policy -------------------------------------------------------------------------

    def write(self, name, text):
        path = Path(self.tmp.name) / name
        path.write_text(text, encoding="utf-8")
        return path

    def rendered_request_function(self, deploy_call):
        """The viewer-request code inlined in the template that the deploy call sends."""
        template = Path(self.flag(deploy_call, "--template-file")).read_text()
        return template.split("ViewerRequestFunction:", 1)[1].split("FunctionCode: |", 1)[1].split("\n\n", 1)[0]

    def test_policy_reaches_the_function_and_the_lambda_config(self):
        policy = self.write("policy.json", '{"widths": [256, 512], "presets": {"thumb": "w=256&h=256&fmt=auto"}}')
        plain = self.rendered_request_function(next(c for c in self.calls(self.run_deploy("--dry-run", "deploy")) if c[:3] == ["aws", "cloudformation", "deploy"]))
        self.assertNotIn("w=256&h=256&fmt=auto", plain)
        for args, env in ((["deploy", "--policy", str(policy)], {}), (["deploy"], {"IMGEDGE_POLICY_FILE": str(policy)})):
            run = self.run_deploy("--dry-run", *args, env=env)
            calls = self.calls(run)
            package = next(c for c in calls if c[0] == "env")
            self.assertIn(f"IMGEDGE_POLICY_FILE={policy}", package, "package.sh puts it into config.json")
            code = self.rendered_request_function(next(c for c in calls if c[:3] == ["aws", "cloudformation", "deploy"]))
            self.assertIn("w=256&h=256&fmt=auto", code, "the preset is baked into the function")
            self.assertNotIn("no policy", run.stderr)
        # A relative path is passed on as an absolute one (package.sh runs elsewhere).
        run = subprocess.run(
            ["bash", str(DEPLOY), "--dry-run", "deploy", "--policy", "policy.json"],
            cwd=self.tmp.name, env=self.env, capture_output=True, text=True, timeout=60, check=False,
        )
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn(f"IMGEDGE_POLICY_FILE={policy}", next(c for c in self.calls(run) if c[0] == "env"))

    def test_without_a_policy_none_is_deployed(self):
        run = self.run_deploy("--dry-run", "deploy")
        calls = self.calls(run)
        package = next(c for c in calls if c[0] == "env")
        self.assertIn("IMGEDGE_POLICY_FILE=", package, "empty: none from the caller's environment either")
        self.assertIn("no policy (--policy FILE)", run.stderr)

    def test_a_bad_policy_stops_before_anything_is_called(self):
        cases = [
            ('{"widths": [256.5]}', "widths[0]"),
            ('{"presets": {"thumb": "w=256&q=50"}}', "presets.thumb"),
            ('{"widths": [256]', "JSON"),
            ("[256]", "a policy is a JSON object"),
        ]
        for text, mention in cases:
            with self.subTest(text):
                policy = self.write("bad-policy.json", text)
                run = self.run_deploy("--dry-run", "deploy", "--policy", str(policy), ok=False)
                self.assertEqual(run.returncode, 1, run.stderr)
                self.assertIn(str(policy), run.stderr, "the message names the file")
                self.assertIn(mention, run.stderr)
                self.assertEqual(self.calls(run), [], "nothing is called")
        run = self.run_deploy("--dry-run", "deploy", "--policy", "/nonexistent/policy.json", ok=False)
        self.assertEqual((run.returncode, self.calls(run)), (1, []))
        self.assertIn("--policy /nonexistent/policy.json: no such readable file", run.stderr)
        run = self.run_deploy("--dry-run", "outputs", "--policy", str(self.write("p.json", "{}")), ok=False)
        self.assertEqual((run.returncode, self.calls(run)), (1, []))
        self.assertIn("--policy goes with deploy", run.stderr)

    # --- --mode regional ------------------------------------------------------------------

    @staticmethod
    def transform_version():
        """The core's transform version, read as build.mjs reads it."""
        key_rs = (INFRA.parent / "edge" / "src" / "key.rs").read_text(encoding="utf-8")
        return re.search(r"^pub const TRANSFORM_VERSION: u32 = ([1-9][0-9]*);$", key_rs, re.M).group(1)

    def overrides(self, deploy):
        return dict(a.split("=", 1) for a in deploy[deploy.index("--parameter-overrides") + 1 :] if "=" in a)

    def test_regional_deploy_makes_the_same_calls_with_the_regional_zip(self):
        for args, env, arch in (
            (["--mode", "regional"], {}, "arm64"),
            (["--mode", "regional", "--arch", "x86_64"], {}, "x86_64"),
            ([], {"IMGEDGE_MODE": "regional", "IMGEDGE_ARCH": "x86_64"}, "x86_64"),
        ):
            with self.subTest(args=args, env=env):
                calls = self.calls(self.run_deploy("--dry-run", "deploy", *args, env=env))
                self.assertEqual([self.op(c) for c in calls][: len(DEPLOY_PLAN)], DEPLOY_PLAN)
                package = calls[3]
                self.assertIn("IMGEDGE_MODE=regional", package)
                self.assertIn(f"IMGEDGE_ARCH={arch}", package)
                self.assertFalse(any(a.startswith(("IMGEDGE_BUCKET=", "IMGEDGE_POLICY_FILE=")) for a in package), "the zip holds no settings")
                put = calls[8]
                self.assertTrue(self.flag(put, "--body").endswith("dist/regional-function.zip"))
                self.assertTrue(self.flag(put, "--key").startswith("regional-function/"))
                overrides = self.overrides(calls[9])
                self.assertEqual((overrides["Mode"], overrides["Architecture"]), ("regional", arch))
                self.assertEqual((overrides["MaxPixels"], overrides["MaxBytes"], overrides["Policy"]), ("50000000", "33554432", ""))
                code = self.rendered_request_function(calls[9])
                self.assertIn(f'"_variants/v{self.transform_version()}/"', code, "the regional rewrite, of the core's version")

    def test_edge_deploy_keeps_the_edge_function_and_no_rewrite(self):
        calls = self.calls(self.run_deploy("--dry-run", "deploy"))
        deploy = next(c for c in calls if c[:3] == ["aws", "cloudformation", "deploy"])
        overrides = self.overrides(deploy)
        self.assertEqual((overrides["Mode"], overrides["Policy"]), ("edge", ""))
        self.assertNotIn("_variants/v", self.rendered_request_function(deploy))

    def test_regional_limits_and_policy_reach_the_function_environment(self):
        policy = self.write("policy.json", '{\n  "widths": [256, 512],\n  "presets": {"thumb": "w=256&fmt=auto"}\n}\n')
        env = {"IMGEDGE_MAX_PIXELS": "20000000", "IMGEDGE_MAX_BYTES": "1048576"}
        calls = self.calls(self.run_deploy("--dry-run", "deploy", "--mode", "regional", "--policy", str(policy), env=env))
        deploy = next(c for c in calls if c[:3] == ["aws", "cloudformation", "deploy"])
        overrides = self.overrides(deploy)
        self.assertEqual(json.loads(overrides["Policy"]), {"widths": [256, 512], "presets": {"thumb": "w=256&fmt=auto"}})
        self.assertNotIn(" ", overrides["Policy"], "compact JSON")
        self.assertEqual((overrides["MaxPixels"], overrides["MaxBytes"]), ("20000000", "1048576"))
        self.assertIn("w=256&fmt=auto", self.rendered_request_function(deploy), "and baked into the viewer-request function")

    def test_regional_refusals_come_before_any_call(self):
        big = self.write("big-policy.json", json.dumps({"presets": {f"p{i}": "w=256&h=256&fmt=auto" for i in range(150)}}))
        for args, mention in (
            (["--mode", "lambda"], "--mode (or IMGEDGE_MODE) must be edge or regional"),
            (["--mode", "regional", "--arch", "arm"], "must be arm64 or x86_64"),
            # The function's 10 KB bounds the policy, and with it the function's environment.
            (["--mode", "regional", "--policy", str(big)], "CloudFront allows less than 10240"),
        ):
            with self.subTest(args):
                run = self.run_deploy("--dry-run", "deploy", *args, ok=False)
                self.assertEqual((run.returncode, self.calls(run)), (1, []), run.stderr)
                self.assertIn(mention, run.stderr)
        run = self.run_deploy("--dry-run", "outputs", "--mode", "regional", ok=False)
        self.assertIn("--mode and --arch go with deploy", run.stderr)

    # --- --signing-keys -------------------------------------------------------------------

    def assert_no_secret(self, run, secrets=SECRETS):
        for secret in secrets:
            for text in (run.stdout, run.stderr):
                self.assertNotIn(secret.lower(), text.lower(), "a secret was printed")
                self.assertNotIn(secret[:16].lower(), text.lower(), "part of a secret was printed")

    def keys_file(self, name="keys.txt", secrets=SECRETS):
        return self.write(name, "# imgedge signing keys, newest first\n" + "\n".join(secrets) + "\n")

    def kvs_calls(self, calls):
        return [c for c in calls if c[:2] == ["aws", "cloudfront-keyvaluestore"]]

    def test_signing_keys_go_into_the_key_value_store_after_the_stack(self):
        keys = self.keys_file()
        run = self.run_deploy("--dry-run", "deploy", "--signing-keys", str(keys))
        calls = self.calls(run)
        ops = [self.op(c) for c in calls]
        at = ops.index(("cloudformation", "deploy"))
        self.assertEqual(
            ops[at:],
            [
                ("cloudformation", "deploy"),
                ("cloudformation", "describe-stacks"),
                ("cloudfront-keyvaluestore", "describe-key-value-store"),
                ("cloudfront-keyvaluestore", "put-key"),
                ("cloudformation", "describe-stacks"),
                ("cloudformation", "describe-stacks"),
            ],
        )
        self.assertIn("SigningKeyValueStoreArn", self.flag(calls[at + 1], "--query"))
        describe, put = calls[at + 2], calls[at + 3]
        self.assertEqual(self.flag(describe, "--kvs-arn"), "<SigningKeyValueStoreArn>")
        self.assertEqual(self.flag(describe, "--query"), "ETag")
        self.assertEqual(self.flag(put, "--kvs-arn"), "<SigningKeyValueStoreArn>")
        self.assertEqual(self.flag(put, "--key"), "signing-keys")
        self.assertEqual(self.flag(put, "--if-match"), "<ETag>")
        self.assertEqual(self.flag(put, "--value"), f"file://{keys}", "the CLI reads the file: no secret in argv")
        self.assertEqual(self.flag(put, "--region"), "us-east-1")
        self.assertIn("3 secret(s)", run.stderr)
        self.assert_no_secret(run)

    def test_a_relative_keys_file_is_read_from_its_absolute_path(self):
        keys = self.keys_file()
        run = subprocess.run(
            ["bash", str(DEPLOY), "--dry-run", "signing-keys", keys.name],
            cwd=self.tmp.name, env=self.env, capture_output=True, text=True, timeout=60, check=False,
        )
        self.assertEqual(run.returncode, 0, run.stderr)
        put = self.kvs_calls(self.calls(run))[-1]
        self.assertEqual(self.flag(put, "--value"), f"file://{keys}")

    def test_signing_keys_command_changes_only_the_keys(self):
        keys = self.keys_file()
        calls = self.calls(self.run_deploy("--dry-run", "signing-keys", str(keys)))
        self.assertEqual(
            [self.op(c) for c in calls],
            [
                ("sts", "get-caller-identity"),
                ("cloudformation", "describe-stacks"),
                ("cloudfront-keyvaluestore", "describe-key-value-store"),
                ("cloudfront-keyvaluestore", "put-key"),
            ],
        )
        for args in (["signing-keys"], ["signing-keys", str(keys), "extra"]):
            run = self.run_deploy("--dry-run", *args, ok=False)
            self.assertEqual((run.returncode, self.calls(run)), (1, []), args)
            self.assertIn("signing-keys needs one argument", run.stderr)

    def test_none_turns_signing_off(self):
        for args in (["deploy", "--signing-keys", "none"], ["signing-keys", "none"]):
            run = self.run_deploy("--dry-run", *args)
            kvs = self.kvs_calls(self.calls(run))
            self.assertEqual([c[2] for c in kvs], ["describe-key-value-store", "delete-key"], args)
            delete = kvs[1]
            self.assertEqual(self.flag(delete, "--kvs-arn"), "<SigningKeyValueStoreArn>")
            self.assertEqual(self.flag(delete, "--key"), "signing-keys")
            self.assertEqual(self.flag(delete, "--if-match"), "<ETag>")
            self.assertIn("signing is off", run.stderr)

    def test_a_deploy_without_the_option_leaves_the_keys(self):
        self.assertEqual(self.kvs_calls(self.calls(self.run_deploy("--dry-run", "deploy"))), [])

    def test_keys_files_of_the_shared_fixture(self):
        """The same rules as edge/src/sign.rs and the function: tests/fixtures/signature-cases.json."""
        for i, case in enumerate(SIGNATURES["keyfiles"]):
            with self.subTest(case["text"][:40]):
                keys = self.write(f"keys-{i}.txt", case["text"])
                run = self.run_deploy("--dry-run", "signing-keys", str(keys), ok="keys" in case)
                self.assert_no_secret(run)
                if "keys" in case:
                    self.assertIn(f"{len(case['keys'])} secret(s)", run.stderr)
                    continue
                self.assertEqual((run.returncode, self.calls(run)), (1, []), "refused before any call")
                if case["error_line"] is None:
                    self.assertIn("holds no secret", run.stderr)
                else:
                    self.assertIn(f"line {case['error_line']}: not a secret", run.stderr)

    def test_bad_keys_stop_a_deploy_before_anything_is_called(self):
        bad = self.write("bad.txt", SECRETS[0][:-1] + "\n")
        run = self.run_deploy("--dry-run", "deploy", "--signing-keys", str(bad), ok=False)
        self.assertEqual((run.returncode, self.calls(run)), (1, []))
        self.assertIn("line 1: not a secret", run.stderr)
        self.assert_no_secret(run, [SECRETS[0][:-1]])
        run = self.run_deploy("--dry-run", "deploy", "--signing-keys", "/nonexistent/keys", ok=False)
        self.assertEqual((run.returncode, self.calls(run)), (1, []))
        self.assertIn("no such readable file", run.stderr)
        run = self.run_deploy("--dry-run", "outputs", "--signing-keys", str(self.keys_file()), ok=False)
        self.assertEqual((run.returncode, self.calls(run)), (1, []))
        self.assertIn("--signing-keys goes with deploy", run.stderr)

    def test_a_value_over_1_kb_is_refused(self):
        secret = "ab" * 32  # 64 hex digits + newline = 65 bytes a line
        fits = self.write("15.txt", (secret + "\n") * 15)
        self.assertEqual(self.run_deploy("--dry-run", "signing-keys", str(fits)).returncode, 0)
        over = self.write("16.txt", (secret + "\n") * 16)
        run = self.run_deploy("--dry-run", "signing-keys", str(over), ok=False)
        self.assertEqual((run.returncode, self.calls(run)), (1, []))
        self.assertIn("1040 bytes", run.stderr)
        self.assertIn("at most 1024", run.stderr)
        self.assert_no_secret(run, [secret])

    # --- --alarm-topic ----------------------------------------------------------------------

    TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:imgedge-alarms"

    def stack_overrides(self, calls):
        deploy = next(c for c in calls if c[:3] == ["aws", "cloudformation", "deploy"])
        return dict(a.split("=", 1) for a in deploy[deploy.index("--parameter-overrides") + 1 :] if "=" in a)

    def test_alarm_topic_is_checked_then_reaches_the_stack(self):
        for args, env in ((["deploy", "--alarm-topic", self.TOPIC], {}), (["deploy"], {"IMGEDGE_ALARM_TOPIC": self.TOPIC})):
            with self.subTest(env=env):
                run = self.run_deploy("--dry-run", *args, env=env)
                calls = self.calls(run)
                self.assertEqual([self.op(c) for c in calls[:3]], [("sts", "get-caller-identity"), ("sns", "get-topic-attributes"), ("cloudformation", "describe-stacks")])
                self.assertEqual(self.flag(calls[1], "--topic-arn"), self.TOPIC)
                self.assertEqual(self.flag(calls[1], "--region"), "us-east-1")
                self.assertEqual(self.stack_overrides(calls)["AlarmTopicArn"], self.TOPIC)
                self.assertIn(f"alarms notify {self.TOPIC}", run.stderr)
                self.assertNotIn("no alarm topic", run.stderr)

    def test_without_an_alarm_topic_the_alarms_have_no_actions(self):
        run = self.run_deploy("--dry-run", "deploy")
        calls = self.calls(run)
        self.assertNotIn(("sns", "get-topic-attributes"), [self.op(c) for c in calls])
        self.assertEqual(self.stack_overrides(calls)["AlarmTopicArn"], "", "empty: a deploy without it removes the actions")
        self.assertIn("no alarm topic (--alarm-topic ARN)", run.stderr)

    def test_a_topic_of_another_account_is_not_read(self):
        topic = "arn:aws:sns:us-east-1:111122223333:central-alarms"
        run = self.run_deploy("--dry-run", "deploy", "--alarm-topic", topic)
        calls = self.calls(run)
        self.assertNotIn(("sns", "get-topic-attributes"), [self.op(c) for c in calls])
        self.assertEqual(self.stack_overrides(calls)["AlarmTopicArn"], topic)
        self.assertIn("belongs to account 111122223333", run.stderr)
        self.assertIn("cloudwatch.amazonaws.com", run.stderr)

    def test_a_bad_alarm_topic_stops_before_anything_is_called(self):
        cases = [
            (["--alarm-topic", "arn:aws:sns:eu-west-1:123456789012:alarms"], {}, "the topic is in eu-west-1"),
            (["--alarm-topic", "imgedge-alarms"], {}, "--alarm-topic imgedge-alarms: not the ARN of a standard SNS topic"),
            (["--alarm-topic", "arn:aws:sns:us-east-1:123456789012:alarms.fifo"], {}, "not the ARN of a standard SNS topic"),
            (["--alarm-topic", "arn:aws:sqs:us-east-1:123456789012:alarms"], {}, "not the ARN of a standard SNS topic"),
            ([], {"IMGEDGE_ALARM_TOPIC": "alarms"}, "IMGEDGE_ALARM_TOPIC=alarms: not the ARN"),
            (["--alarm-topic"], {}, "--alarm-topic needs an argument"),
        ]
        for args, env, mention in cases:
            with self.subTest(args=args, env=env):
                run = self.run_deploy("--dry-run", "deploy", *args, env=env, ok=False)
                self.assertEqual((run.returncode, self.calls(run)), (1, []), run.stderr)
                self.assertIn(mention, run.stderr)
        run = self.run_deploy("--dry-run", "outputs", "--alarm-topic", self.TOPIC, ok=False)
        self.assertEqual((run.returncode, self.calls(run)), (1, []))
        self.assertIn("--alarm-topic goes with deploy", run.stderr)
        # Commands other than deploy ignore IMGEDGE_ALARM_TOPIC, as they pass no parameters.
        self.assertEqual(self.run_deploy("--dry-run", "outputs", env={"IMGEDGE_ALARM_TOPIC": "bad"}).returncode, 0)

    def test_the_script_and_the_template_accept_the_same_topics(self):
        template = yaml.load((INFRA / "template.yaml").read_text(), Loader=yaml.BaseLoader)
        allowed = template["Parameters"]["AlarmTopicArn"]["AllowedPattern"]
        script = next(line for line in DEPLOY.read_text().splitlines() if line.startswith("ALARM_TOPIC_PATTERN="))
        self.assertEqual(allowed, "^(|" + script.split("'")[1][1:-1] + ")$", "the template's pattern is the script's or empty")

    def test_usage_and_unknown_commands(self):
        usage = self.run_deploy("--help").stdout
        self.assertIn("invalidate PATH", usage)
        self.assertIn("--yes", usage)
        self.assertIn("--alarm-topic ARN", usage)
        self.assertNotIn("set -euo", usage)
        run = self.run_deploy("--dry-run", "launch", ok=False)
        self.assertNotEqual(run.returncode, 0)
        self.assertIn("unknown command: launch", run.stderr)


class FakeAwsDestroy(unittest.TestCase):
    """destroy against a scripted `aws` playing CloudFormation. No local AWS can keep a
    function's replicas alive (moto deletes at once), so the fake fails the stack deletion on
    the named resources for the first N waits, then succeeds. It reports the stack's buckets as
    my-images / my-artifacts, names deploy.sh would never derive, so a message naming them
    proves destroy read them from the stack."""

    FAKE = """#!/bin/sh
echo "$*" >> "$STATE/calls"
case "$1 $2" in
  "sts get-caller-identity") echo 123456789012 ;;
  "cloudformation describe-stacks")
    if [ -e "$STATE/no-stack" ]; then
      echo "An error occurred (ValidationError) when calling the DescribeStacks operation: Stack with id imgedge does not exist" >&2
      exit 255
    fi
    printf 'my-images\\tmy-images\\tmy-artifacts\\n' ;;
  "cloudformation wait")
    n=$(cat "$STATE/failures")
    if [ "$n" -gt 0 ]; then echo $((n - 1)) > "$STATE/failures"; exit 255; fi ;;
  "cloudformation describe-stack-resources")
    case "$*" in
      *DELETE_FAILED*) cat "$STATE/failed" ;;
      *) printf 'ImageBucket\\tAWS::S3::Bucket\\tmy-images\\nEdgeFunction\\tAWS::Lambda::Function\\timgedge-origin-request\\n' ;;
    esac ;;
esac
"""

    def destroy(self, failures=0, failed="EdgeFunction", attempts="16", args=("--yes",), stdin=subprocess.DEVNULL, answer=None, no_stack=False):
        with tempfile.TemporaryDirectory() as state:
            bin_dir = Path(state) / "bin"
            bin_dir.mkdir()
            (bin_dir / "aws").write_text(self.FAKE)
            (bin_dir / "aws").chmod(0o755)
            (Path(state) / "failures").write_text(str(failures))
            (Path(state) / "failed").write_text(failed + "\n")
            (Path(state) / "calls").write_text("")
            if no_stack:
                (Path(state) / "no-stack").write_text("")
            env = {
                "PATH": f"{bin_dir}:/usr/bin:/bin",
                "HOME": state,
                "STATE": state,
                "IMGEDGE_DESTROY_RETRY_MINUTES": "0",
                "IMGEDGE_DESTROY_ATTEMPTS": attempts,
            }
            argv = ["bash", str(DEPLOY), *args, "destroy"]
            if answer is None:
                run = subprocess.run(argv, env=env, stdin=stdin, capture_output=True, text=True, timeout=60, check=False)
            else:
                # A real terminal on stdin (a pty), with the answer already typed.
                primary, secondary = pty.openpty()
                try:
                    os.write(primary, answer.encode() + b"\n")
                    run = subprocess.run(argv, env=env, stdin=secondary, capture_output=True, text=True, timeout=60, check=False)
                finally:
                    os.close(primary)
                    os.close(secondary)
            calls = [line.split()[:2] for line in (Path(state) / "calls").read_text().splitlines()]
        return run, calls

    LOOKUP = [["sts", "get-caller-identity"], ["cloudformation", "describe-stacks"], ["cloudformation", "describe-stack-resources"]]
    CYCLE = [["cloudformation", "delete-stack"], ["cloudformation", "wait"], ["cloudformation", "describe-stack-resources"]]

    def test_retries_while_the_function_has_replicas(self):
        run, calls = self.destroy(failures=2)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertEqual(calls, self.LOOKUP + self.CYCLE * 2 + self.CYCLE[:2])
        self.assertIn("attempt 1: EdgeFunction not deletable yet", run.stderr)
        self.assertIn("stack imgedge deleted", run.stderr)

    def test_other_failures_stop_with_the_events_command(self):
        run, calls = self.destroy(failures=1, failed="ImageBucketPolicy")
        self.assertEqual(run.returncode, 1)
        self.assertIn("describe-stack-events", run.stderr)
        self.assertIn("ImageBucketPolicy", run.stderr)
        self.assertEqual(calls.count(["cloudformation", "delete-stack"]), 1)

    def test_gives_up_after_the_last_attempt(self):
        run, calls = self.destroy(failures=5, attempts="3")
        self.assertEqual(run.returncode, 1)
        self.assertIn("after 3 attempts", run.stderr)
        self.assertEqual(calls.count(["cloudformation", "delete-stack"]), 3)

    def test_lists_the_stack_and_names_its_buckets(self):
        run, _ = self.destroy()
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertRegex(run.stderr, r"keep +ImageBucket \(AWS::S3::Bucket\) my-images")
        self.assertRegex(run.stderr, r"delete +EdgeFunction \(AWS::Lambda::Function\) imgedge-origin-request")
        self.assertIn("s3://my-images", run.stderr)
        self.assertIn("s3://my-artifacts", run.stderr)
        self.assertNotIn("imgedge-images-", run.stderr, "no derived bucket name")
        self.assertNotIn("imgedge-artifacts-", run.stderr, "no derived bucket name")
        # The listing comes before anything is deleted.
        self.assertLess(run.stderr.index("delete  EdgeFunction"), run.stderr.index("Destroying stack"))

    def test_without_a_terminal_or_yes_it_refuses(self):
        run, calls = self.destroy(args=())
        self.assertEqual(run.returncode, 1)
        self.assertIn("input is not a terminal", run.stderr)
        self.assertIn("--yes", run.stderr)
        self.assertIn("nothing was deleted", run.stderr)
        self.assertNotIn(["cloudformation", "delete-stack"], calls)
        self.assertIn("delete  EdgeFunction", run.stderr, "it still showed what it would delete")

    def test_on_a_terminal_it_asks_for_the_stack_name(self):
        run, calls = self.destroy(args=(), answer="y")
        self.assertEqual(run.returncode, 1, run.stderr)
        self.assertIn("Type the stack name (imgedge)", run.stderr)
        self.assertIn("not confirmed", run.stderr)
        self.assertNotIn(["cloudformation", "delete-stack"], calls)

        run, calls = self.destroy(args=(), answer="imgedge")
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn(["cloudformation", "delete-stack"], calls)
        self.assertIn("stack imgedge deleted", run.stderr)

    def test_a_missing_stack_is_reported_not_deleted(self):
        run, calls = self.destroy(no_stack=True)
        self.assertEqual(run.returncode, 1)
        self.assertIn("stack imgedge does not exist in us-east-1", run.stderr)
        self.assertIn("nothing to destroy", run.stderr)
        self.assertNotIn(["cloudformation", "delete-stack"], calls)


class FakeAwsDeploy(unittest.TestCase):
    """deploy for real against a scripted `aws` whose S3 answers head-bucket as S3 does with
    --expected-bucket-owner: 403 for a bucket another account owns, 404 for a free name.
    (moto accepts the flag but does not check it.)"""

    FAKE = """#!/bin/sh
echo "$*" >> "$STATE/calls"
case "$1 $2" in
  "sts get-caller-identity") echo 123456789012 ;;
  "cloudformation describe-stacks")
    [ -e "$STATE/deployed" ] || { echo "Stack with id imgedge does not exist" >&2; exit 255; } ;;
  "cloudformation deploy") touch "$STATE/deployed" ;;
  "s3api head-object") echo "An error occurred (404) when calling the HeadObject operation: Not Found" >&2; exit 255 ;;
  "s3api head-bucket")
    case "$*" in
      *"--bucket squatted-"*) echo "An error occurred (403) when calling the HeadBucket operation: Forbidden" >&2; exit 255 ;;
      *"--bucket ours-"*) exit 0 ;;
      *) echo "An error occurred (404) when calling the HeadBucket operation: Not Found" >&2; exit 255 ;;
    esac ;;
esac
"""

    def deploy(self, **settings):
        with tempfile.TemporaryDirectory() as state:
            bin_dir = Path(state) / "bin"
            bin_dir.mkdir()
            (bin_dir / "aws").write_text(self.FAKE)
            (bin_dir / "aws").chmod(0o755)
            (Path(state) / "calls").write_text("")
            zip_path = Path(state) / "fn.zip"
            with zipfile.ZipFile(zip_path, "w") as z:
                z.writestr("index.mjs", "export const handler = async () => ({});\n")
            env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": state, "STATE": state, "IMGEDGE_ZIP": str(zip_path), **settings}
            run = subprocess.run(["bash", str(DEPLOY), "deploy"], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False)
            calls = (Path(state) / "calls").read_text().splitlines()
        return run, calls

    def test_a_foreign_artifact_bucket_gets_nothing(self):
        run, calls = self.deploy(IMGEDGE_ARTIFACT_BUCKET="squatted-artifacts")
        self.assertEqual(run.returncode, 1, run.stderr)
        self.assertIn("the artifact bucket squatted-artifacts exists but is not owned by account 123456789012", run.stderr)
        self.assertIn("IMGEDGE_ARTIFACT_BUCKET", run.stderr)
        self.assertFalse([c for c in calls if c.startswith(("s3api put-", "s3api create-", "cloudformation deploy"))], calls)
        head = [c for c in calls if "--bucket squatted-artifacts" in c]
        self.assertEqual(len(head), 1)
        self.assertIn("--expected-bucket-owner 123456789012", head[0])

    def test_a_foreign_image_bucket_is_named(self):
        run, calls = self.deploy(IMGEDGE_BUCKET="squatted-images")
        self.assertEqual(run.returncode, 1, run.stderr)
        self.assertIn("bucket squatted-images already exists and belongs to another account", run.stderr)
        self.assertFalse([c for c in calls if c.startswith(("s3api put-", "s3api create-", "cloudformation deploy"))], calls)

    def test_an_own_image_bucket_without_its_stack_is_refused(self):
        run, _ = self.deploy(IMGEDGE_BUCKET="ours-images")
        self.assertEqual(run.returncode, 1, run.stderr)
        self.assertIn("bucket ours-images already exists but stack imgedge does not", run.stderr)

    def test_a_free_artifact_bucket_is_created_then_used_with_the_owner(self):
        run, calls = self.deploy()
        self.assertEqual(run.returncode, 0, run.stderr)
        ops = [" ".join(c.split()[:2]) for c in calls]
        self.assertEqual(
            ops,
            [
                "sts get-caller-identity",
                "cloudformation describe-stacks",
                "s3api head-bucket",
                "s3api head-bucket",
                "s3api create-bucket",
                "s3api put-public-access-block",
                "s3api head-object",
                "s3api put-object",
                "cloudformation deploy",
                "cloudformation describe-stacks",
                "cloudformation describe-stacks",
            ],
        )
        for c in calls:
            if c.startswith("s3api") and not c.startswith("s3api create-bucket"):
                self.assertIn("--expected-bucket-owner 123456789012", c)


class FakeAwsSigningKeys(unittest.TestCase):
    """signing-keys for real against a scripted `aws` playing CloudFormation and the CloudFront
    KeyValueStore API (moto has no cloudfront-keyvaluestore). It records every argv and, for
    put-key, the value it would store, read from the file:// path as the CLI does."""

    ARN = "arn:aws:cloudfront::123456789012:key-value-store/0123abcd"
    FAKE = """#!/bin/sh
printf '%s\\n' "$*" >> "$STATE/calls"
case "$1 $2" in
  "sts get-caller-identity") echo 123456789012 ;;
  "cloudformation describe-stacks")
    if [ -e "$STATE/no-kvs" ]; then echo None; else echo "$ARN"; fi ;;
  cloudfront-keyvaluestore*)
    if [ -e "$STATE/no-crt" ]; then
      echo "Missing Dependency: This operation requires an additional dependency. Use pip install botocore[crt] before proceeding." >&2
      exit 255
    fi
    case "$2" in
      describe-key-value-store) echo ETAG1 ;;
      put-key)
        if [ -e "$STATE/conflict" ]; then
          echo "An error occurred (ConflictException) when calling the PutKey operation: ETag mismatch" >&2; exit 254
        fi
        while [ $# -gt 0 ]; do
          [ "$1" = --value ] && cat "${2#file://}" > "$STATE/value"
          shift
        done
        printf '1\\t1200\\tETAG2\\n' ;;
      delete-key)
        if [ ! -e "$STATE/value" ]; then
          echo "An error occurred (ResourceNotFoundException) when calling the DeleteKey operation: Key not found" >&2; exit 254
        fi
        rm "$STATE/value" ;;
    esac ;;
esac
"""

    def signing_keys(self, arg, state_files=(), value=None):
        with tempfile.TemporaryDirectory() as state:
            bin_dir = Path(state) / "bin"
            bin_dir.mkdir()
            (bin_dir / "aws").write_text(self.FAKE)
            (bin_dir / "aws").chmod(0o755)
            for name in state_files:
                (Path(state) / name).write_text("")
            if value is not None:
                (Path(state) / "value").write_text(value)
            keys = Path(state) / "keys.txt"
            keys.write_text("# newest first\n" + "\n".join(SECRETS) + "\n")
            env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": state, "STATE": state, "ARN": self.ARN}
            argv = ["bash", str(DEPLOY), "signing-keys", str(keys) if arg == "FILE" else arg]
            run = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False)
            calls = (Path(state) / "calls").read_text().splitlines() if (Path(state) / "calls").exists() else []
            stored = (Path(state) / "value").read_text() if (Path(state) / "value").exists() else None
            return run, calls, stored, keys.read_text()

    def assert_no_secret(self, *texts):
        for secret in SECRETS:
            for text in texts:
                self.assertNotIn(secret[:16].lower(), text.lower())

    def test_the_file_text_is_stored_and_no_secret_is_on_a_command_line(self):
        run, calls, stored, text = self.signing_keys("FILE")
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertEqual(stored, text, "the KeyValueStore value is the keys file's text")
        put = next(c for c in calls if c.startswith("cloudfront-keyvaluestore put-key"))
        self.assertIn(f"--kvs-arn {self.ARN} --key signing-keys --value file://", put)
        self.assertIn("--if-match ETAG1", put)
        self.assert_no_secret(run.stdout, run.stderr, "\n".join(calls))

    def test_none_deletes_the_key_or_says_it_was_already_off(self):
        run, calls, stored, _ = self.signing_keys("none", value="x")
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIsNone(stored)
        self.assertIn("signing keys deleted", run.stderr)
        self.assertTrue(any(c.startswith(f"cloudfront-keyvaluestore delete-key --kvs-arn {self.ARN} --key signing-keys --if-match ETAG1") for c in calls), calls)
        run, _, _, _ = self.signing_keys("none")
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn("signing was already off", run.stderr)

    def test_errors_say_what_to_do_and_that_nothing_changed(self):
        run, _, stored, _ = self.signing_keys("FILE", state_files=["no-crt"])
        self.assertEqual(run.returncode, 1)
        self.assertIn("use AWS CLI v2", run.stderr)
        self.assertIn("botocore[crt]", run.stderr)
        self.assertIn("the signing keys were not changed", run.stderr)
        self.assertIsNone(stored)
        run, _, stored, _ = self.signing_keys("FILE", state_files=["conflict"])
        self.assertEqual(run.returncode, 1)
        self.assertIn("ConflictException", run.stderr)
        self.assertIn("run again", run.stderr)
        run, calls, _, _ = self.signing_keys("FILE", state_files=["no-kvs"])
        self.assertEqual(run.returncode, 1)
        self.assertIn("has no SigningKeyValueStoreArn output", run.stderr)
        self.assertFalse([c for c in calls if c.startswith("cloudfront-keyvaluestore")], calls)
        self.assert_no_secret(run.stdout, run.stderr)


class RealRunErrors(unittest.TestCase):
    """Without --dry-run: the errors a user without the CLI or credentials sees."""

    def run_deploy(self, env):
        return subprocess.run(
            ["bash", str(DEPLOY), "outputs"], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    def test_missing_aws_cli(self):
        with tempfile.TemporaryDirectory() as home:
            run = self.run_deploy({"PATH": "/usr/bin:/bin", "HOME": home, "AWS_REGION": "us-east-1"})
        self.assertEqual(run.returncode, 1)
        self.assertIn("the AWS CLI ('aws') is not installed", run.stderr)

    @unittest.skipUnless(os.environ.get("IMGEDGE_AWS_CLI"), "IMGEDGE_AWS_CLI (path of an aws CLI) not set")
    def test_missing_credentials(self):
        cli = Path(os.environ["IMGEDGE_AWS_CLI"])
        with tempfile.TemporaryDirectory() as home:
            env = {
                "PATH": f"{cli.parent}:/usr/bin:/bin",
                "HOME": home,
                "AWS_REGION": "us-east-1",
                "AWS_CONFIG_FILE": f"{home}/none",
                "AWS_SHARED_CREDENTIALS_FILE": f"{home}/none",
                "AWS_EC2_METADATA_DISABLED": "true",
            }
            run = self.run_deploy(env)
        self.assertEqual(run.returncode, 1, run.stderr)
        self.assertIn("no usable AWS credentials", run.stderr)
        self.assertIn("Unable to locate credentials", run.stderr)


if __name__ == "__main__":
    unittest.main()
