"""infra/deploy.sh --dry-run: the AWS CLI calls each command makes, in order, and its errors.

Run: python -m unittest discover -s infra/tests   (infra/test.sh does)

The dry run must not touch AWS: an `aws` that records any call and fails is first on PATH,
and each test checks it was never called. Printed calls are read back with shlex, as a
shell would read them.
"""

import hashlib
import os
import shlex
import subprocess
import tempfile
import unittest
import zipfile
from pathlib import Path

import yaml

INFRA = Path(__file__).resolve().parent.parent
DEPLOY = INFRA / "deploy.sh"
ACCOUNT = "123456789012"  # deploy.sh's dry-run placeholder for the account id


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
        self.env = {
            "PATH": f"{guard.parent}:/usr/bin:/bin",
            "HOME": str(tmp),
            "AWS_REGION": "us-east-1",
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
            [
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
                ("cloudformation", "describe-stacks"),
                ("cloudformation", "describe-stacks"),
            ],
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
        self.assertIn("function handler(event)", rendered.read_text())
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
        self.assertEqual(
            [self.op(c) for c in self.calls(run)],
            [("sts", "get-caller-identity"), ("cloudformation", "delete-stack"), ("cloudformation", "wait")],
        )
        self.assertEqual(self.calls(run)[2][3], "stack-delete-complete")
        self.assertIn("replicas", run.stderr, "destroy explains the Lambda@Edge delay")
        self.assertIn(f"imgedge-images-{ACCOUNT}", run.stderr, "destroy says the image bucket is kept")

    def test_region_must_be_set_and_be_us_east_1(self):
        run = self.run_deploy("--dry-run", "deploy", env={"AWS_REGION": ""}, ok=False)
        self.assertEqual(run.returncode, 1)
        self.assertIn("no AWS region", run.stderr)
        run = self.run_deploy("--dry-run", "deploy", env={"AWS_REGION": "eu-west-1"}, ok=False)
        self.assertEqual(run.returncode, 1)
        self.assertIn("must be deployed in us-east-1", run.stderr)
        self.assertEqual(self.calls(run), [])
        run = self.run_deploy("--dry-run", "outputs", env={"AWS_REGION": "", "AWS_DEFAULT_REGION": "us-east-1"})
        self.assertTrue(all(self.flag(c, "--region") == "us-east-1" for c in self.calls(run)))

    def test_usage_and_unknown_commands(self):
        self.assertIn("invalidate PATH", self.run_deploy("--help").stdout)
        run = self.run_deploy("--dry-run", "launch", ok=False)
        self.assertNotEqual(run.returncode, 0)
        self.assertIn("unknown command: launch", run.stderr)


class DestroyRetries(unittest.TestCase):
    """destroy's wait for Lambda@Edge replicas. No local AWS can keep a function's replicas
    alive (moto deletes at once), so a scripted `aws` plays CloudFormation here: the stack
    deletion fails on the named resources for the first N waits, then succeeds."""

    FAKE = """#!/bin/sh
echo "$*" >> "$STATE/calls"
case "$1 $2" in
  "sts get-caller-identity") echo 123456789012 ;;
  "cloudformation wait")
    n=$(cat "$STATE/failures")
    if [ "$n" -gt 0 ]; then echo $((n - 1)) > "$STATE/failures"; exit 255; fi ;;
  "cloudformation describe-stack-resources") cat "$STATE/failed" ;;
esac
"""

    def destroy(self, failures, failed="EdgeFunction", attempts="16"):
        with tempfile.TemporaryDirectory() as state:
            bin_dir = Path(state) / "bin"
            bin_dir.mkdir()
            (bin_dir / "aws").write_text(self.FAKE)
            (bin_dir / "aws").chmod(0o755)
            (Path(state) / "failures").write_text(str(failures))
            (Path(state) / "failed").write_text(failed + "\n")
            env = {
                "PATH": f"{bin_dir}:/usr/bin:/bin",
                "HOME": state,
                "STATE": state,
                "AWS_REGION": "us-east-1",
                "IMGEDGE_DESTROY_RETRY_MINUTES": "0",
                "IMGEDGE_DESTROY_ATTEMPTS": attempts,
            }
            run = subprocess.run(["bash", str(DEPLOY), "destroy"], env=env, capture_output=True, text=True, timeout=60, check=False)
            calls = [line.split()[:2] for line in (Path(state) / "calls").read_text().splitlines()]
        return run, calls

    def test_retries_while_the_function_has_replicas(self):
        run, calls = self.destroy(failures=2)
        self.assertEqual(run.returncode, 0, run.stderr)
        cycle = [["cloudformation", "delete-stack"], ["cloudformation", "wait"], ["cloudformation", "describe-stack-resources"]]
        self.assertEqual(calls, [["sts", "get-caller-identity"]] + cycle * 2 + cycle[:2])
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
