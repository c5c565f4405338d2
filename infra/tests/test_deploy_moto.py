"""infra/deploy.sh for real against a local moto server (S3, CloudFormation, Lambda, IAM).

Opt-in (about 30 s): IMGEDGE_TEST_MOTO=1, with `aws` and `moto_server` on PATH
(infra/test.sh --moto sets this up). What moto does with the stack (checked here, and in
docs/deploy.md): it creates the bucket (encryption only), the IAM role with its inline
policies, the Lambda function from the uploaded zip and version 1; it silently skips the
bucket's public-access block, ownership controls and lifecycle, the BucketPolicy, OAC,
CachePolicy, CloudFront Function and Distribution, so the stack has no outputs; it does not
publish a new Lambda version when the Version resource changes; it accepts but does not check
--expected-bucket-owner (test_deploy_dry_run.FakeAwsDeploy covers a foreign bucket). The function zip here is a
minimal Node handler: moto cannot run Lambda without docker, so the real package is not needed.
Signing keys: moto implements no cloudfront-keyvaluestore API and its CloudFormation skips
AWS::CloudFront::KeyValueStore (no SigningKeyValueStoreArn output), so here only the refusal
after the stack is checked; the KeyValueStore calls themselves are covered by the dry run and a
scripted aws (test_deploy_dry_run: signing keys tests, FakeAwsSigningKeys).
Operations: moto skips AWS::CloudWatch::Alarm (covered by cfn-lint and the policy rules) but
creates the dashboard, so its body is checked here as CloudFormation resolved it; --alarm-topic
is checked against moto's SNS.
Regional mode: moto creates the regional function (runtime, handler, environment; it reports
x86_64 whatever Architectures says), both CloudFront permissions (leaving ${Distribution} of the
skipped distribution unresolved in their SourceArn) and the regional dashboard; it skips
AWS::Lambda::Url and AWS::CloudFront::OriginRequestPolicy. Moto also updates a resource whose
condition is false when a parameter it names changes, and fails (no such resource): hence one
function resource for both modes, whose properties follow the mode, and not two.
The endpoint is named localhost: the rendered template is over 51,200 bytes, so the CLI sends it
through S3, and moto reads a path-style template URL only from a localhost host.
"""

import ast
import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

INFRA = Path(__file__).resolve().parent.parent
DEPLOY = INFRA / "deploy.sh"
ACCOUNT = "123456789012"  # moto's account id
BUCKET = f"imgedge-images-{ACCOUNT}"
ARTIFACTS = f"imgedge-artifacts-{ACCOUNT}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@unittest.skipUnless(os.environ.get("IMGEDGE_TEST_MOTO") == "1", "opt-in: IMGEDGE_TEST_MOTO=1 (infra/test.sh --moto)")
class DeployAgainstMoto(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        port = free_port()
        cls.log = open(Path(cls.tmp.name) / "moto.log", "w")
        cls.moto = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=cls.log, stderr=subprocess.STDOUT)
        cls.endpoint = f"http://localhost:{port}"
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(cls.endpoint + "/moto-api/", timeout=1)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        cls.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("IMGEDGE_")},
            "AWS_ENDPOINT_URL": cls.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "HOME": cls.tmp.name,
        }

    @classmethod
    def tearDownClass(cls):
        cls.moto.terminate()
        cls.moto.wait(timeout=10)
        cls.log.close()
        cls.tmp.cleanup()

    def zip_with(self, name: str, body: str) -> Path:
        path = Path(self.tmp.name) / name
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("index.mjs", body)
            z.writestr("config.json", json.dumps({"bucket": BUCKET, "region": "us-east-1"}))
        return path

    def deploy_sh(self, *args, zip_path=None, ok=True, env=None):
        env = {**self.env, **(env or {})}
        if zip_path:
            env["IMGEDGE_ZIP"] = str(zip_path)
        run = subprocess.run(
            ["bash", str(DEPLOY), *args], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, check=False
        )
        if ok:
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        return run

    def aws(self, *args):
        run = subprocess.run(
            ["aws", *args, "--region", "us-east-1", "--output", "json"], env=self.env, capture_output=True, text=True, timeout=60, check=False
        )
        self.assertEqual(run.returncode, 0, run.stderr)
        return json.loads(run.stdout) if run.stdout.strip() else None

    def test_deploy_update_invalidate_destroy(self):
        first = self.zip_with("v1.zip", "export const handler = async (event) => event.Records[0].cf.request;\n")
        self.deploy_sh("deploy", zip_path=first)

        stack = self.aws("cloudformation", "describe-stacks", "--stack-name", "imgedge")["Stacks"][0]
        self.assertEqual(stack["StackStatus"], "CREATE_COMPLETE")
        # The artifact: uploaded under its content hash, and what the function runs.
        digest = hashlib.sha256(first.read_bytes()).digest()
        key = f"edge-function/{digest.hex()}.zip"
        self.aws("s3api", "head-object", "--bucket", ARTIFACTS, "--key", key)
        fn = self.aws("lambda", "get-function", "--function-name", "imgedge-origin-request")["Configuration"]
        self.assertEqual(fn["CodeSha256"], base64.b64encode(digest).decode())
        self.assertEqual((fn["Runtime"], fn["Handler"], fn["MemorySize"], fn["Timeout"]), ("nodejs22.x", "index.handler", 1536, 30))
        self.assertEqual(fn["Architectures"], ["x86_64"])
        self.assertNotIn("Environment", fn)
        versions = self.aws("lambda", "list-versions-by-function", "--function-name", "imgedge-origin-request")["Versions"]
        self.assertIn("1", [v["Version"] for v in versions], "a numbered version for CloudFront")
        # The role: trusted by lambda and edgelambda, writes only variants.
        role = self.aws("iam", "get-role", "--role-name", fn["Role"].rsplit("/", 1)[1])["Role"]
        trust = role["AssumeRolePolicyDocument"]
        services = {s for st in trust["Statement"] for s in st["Principal"]["Service"]}
        self.assertEqual(services, {"lambda.amazonaws.com", "edgelambda.amazonaws.com"})
        images = self.aws("iam", "get-role-policy", "--role-name", role["RoleName"], "--policy-name", "images")["PolicyDocument"]
        if isinstance(images, str):  # moto keeps a CloudFormation-made document as text
            text = urllib.parse.unquote(images)
            try:
                images = json.loads(text)
            except ValueError:
                images = ast.literal_eval(text)  # ...as Python's repr of the dict
        put = [s for s in images["Statement"] if s["Action"] == "s3:PutObject"]
        self.assertEqual([s["Resource"] for s in put], [f"arn:aws:s3:::{BUCKET}/_variants/*"])
        # The image bucket, encrypted.
        sse = self.aws("s3api", "get-bucket-encryption", "--bucket", BUCKET)
        self.assertEqual(sse["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"], "AES256")

        # Same code again: nothing uploaded, the stack is left as it is.
        again = self.deploy_sh("deploy", zip_path=first)
        self.assertIn("already uploaded", again.stderr)
        # New code: a new content-hashed key, and the function runs it.
        second = self.zip_with("v2.zip", "export const handler = async (event) => event.Records[0].cf.request; // v2\n")
        self.deploy_sh("deploy", zip_path=second)
        fn = self.aws("lambda", "get-function", "--function-name", "imgedge-origin-request")["Configuration"]
        self.assertEqual(fn["CodeSha256"], base64.b64encode(hashlib.sha256(second.read_bytes()).digest()).decode())

        # moto drops the distribution, so the stack has no DistributionId to invalidate.
        run = self.deploy_sh("invalidate", "/outputs/*", ok=False)
        self.assertEqual(run.returncode, 1)
        self.assertIn("has no DistributionId output", run.stderr)

        # destroy: the stack goes, the image bucket stays.
        self.deploy_sh("--yes", "destroy")
        stacks = self.aws("cloudformation", "list-stacks")["StackSummaries"]
        self.assertTrue(all(s["StackStatus"] == "DELETE_COMPLETE" for s in stacks if s["StackName"] == "imgedge"))
        buckets = [b["Name"] for b in self.aws("s3api", "list-buckets")["Buckets"]]
        self.assertIn(BUCKET, buckets)
        functions = [f["FunctionName"] for f in self.aws("lambda", "list-functions")["Functions"]]
        self.assertNotIn("imgedge-origin-request", functions)

        # A new stack cannot take over the kept bucket: deploy says so before CloudFormation.
        run = self.deploy_sh("deploy", zip_path=first, ok=False)
        self.assertEqual(run.returncode, 1)
        self.assertIn(f"bucket {BUCKET} already exists but stack imgedge does not", run.stderr)
        self.assertEqual(self.aws("cloudformation", "list-stacks")["StackSummaries"], stacks, "no stack was attempted")

    def test_policy_and_signing_keys(self):
        names = {"IMGEDGE_STACK": "Signed", "IMGEDGE_BUCKET": "signed-masters-test", "IMGEDGE_ARTIFACT_BUCKET": "signed-zips-test"}
        zip_path = self.zip_with("signed.zip", "export const handler = async (event) => event.Records[0].cf.request;\n")
        policy = Path(self.tmp.name) / "policy.json"
        policy.write_text('{"widths": [256, 512], "presets": {"thumb": "w=256&h=256&fmt=auto"}}')
        run = self.deploy_sh("deploy", "--policy", str(policy), zip_path=zip_path, env=names)
        self.assertIn("hold the policy of", run.stderr, "a prebuilt zip's config.json is the caller's to match")
        rendered = (INFRA.parent / "dist" / "template.yaml").read_text()
        self.assertIn("w=256&h=256&fmt=auto", rendered, "the policy is baked into the deployed function")
        status = self.aws("cloudformation", "describe-stacks", "--stack-name", "Signed")["Stacks"][0]["StackStatus"]
        self.assertEqual(status, "CREATE_COMPLETE")

        # moto's stack has no KeyValueStore: the keys are refused after the stack, nothing printed.
        secret = "6b1f0c3e8a2d4f5b9c7e1a3d5f7b9e2c4a6d8f0b2e4c6a8d0f2b4e6c8a0d2f4b"
        keys = Path(self.tmp.name) / "keys.txt"
        keys.write_text(secret + "\n")
        run = self.deploy_sh("deploy", "--signing-keys", str(keys), zip_path=zip_path, env=names, ok=False)
        self.assertEqual(run.returncode, 1, run.stderr)
        self.assertIn("stack Signed has no SigningKeyValueStoreArn output", run.stderr)
        self.assertIn("the signing keys were not changed", run.stderr)
        self.assertNotIn(secret[:16], run.stdout + run.stderr)
        status = self.aws("cloudformation", "describe-stacks", "--stack-name", "Signed")["Stacks"][0]["StackStatus"]
        self.assertIn(status, ("CREATE_COMPLETE", "UPDATE_COMPLETE"), "the stack deploy itself went through")
        self.deploy_sh("--yes", "destroy", env={"IMGEDGE_STACK": "Signed"})

    def test_alarm_topic_and_dashboard(self):
        names = {"IMGEDGE_STACK": "Watched", "IMGEDGE_BUCKET": "watched-masters-test", "IMGEDGE_ARTIFACT_BUCKET": "watched-zips-test"}
        zip_path = self.zip_with("watched.zip", "export const handler = async (event) => event.Records[0].cf.request;\n")
        # A topic that does not exist: refused before anything is created.
        missing = f"arn:aws:sns:us-east-1:{ACCOUNT}:no-such-topic"
        run = self.deploy_sh("deploy", "--alarm-topic", missing, zip_path=zip_path, env=names, ok=False)
        self.assertEqual(run.returncode, 1)
        self.assertIn(f"cannot read the alarm topic {missing}", run.stderr)
        stacks = self.aws("cloudformation", "list-stacks")["StackSummaries"]
        self.assertNotIn("Watched", [s["StackName"] for s in stacks], "no stack was attempted")

        topic = self.aws("sns", "create-topic", "--name", "imgedge-alarms")["TopicArn"]
        run = self.deploy_sh("deploy", "--alarm-topic", topic, zip_path=zip_path, env=names)
        self.assertIn(f"alarms notify {topic}", run.stderr)
        stack = self.aws("cloudformation", "describe-stacks", "--stack-name", "Watched")["Stacks"][0]
        params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
        self.assertEqual(params["AlarmTopicArn"], topic)
        # moto skips the alarms but creates the dashboard: its body, as CloudFormation resolved
        # it, is JSON and charts the replicas of this stack's function.
        board = self.aws("cloudwatch", "get-dashboard", "--dashboard-name", "Watched-operations")
        body = json.loads(board["DashboardBody"])
        lambda_lines = [m for w in body["widgets"] for m in w["properties"].get("metrics", []) if m[0] == "AWS/Lambda"]
        self.assertTrue(lambda_lines)
        self.assertTrue(all(m[3] == "us-east-1.Watched-origin-request" for m in lambda_lines), lambda_lines)
        left = set(re.findall(r"\$\{([^}]+)\}", board["DashboardBody"]))
        skipped = {"Distribution", "CloudFront5xxAlarm", "EdgeFunctionErrorsAlarm", "EdgeFunctionThrottlesAlarm"}
        self.assertLessEqual(left, skipped, "every ${...} is substituted but those of resources moto skips")
        self.assertTrue(body["widgets"][0]["properties"]["markdown"].startswith("# imgedge Watched\nCloudFront"), "a real line break")

        # A deploy without the option takes the topic off the alarms (the parameter is empty again).
        run = self.deploy_sh("deploy", zip_path=zip_path, env=names)
        self.assertIn("no alarm topic", run.stderr)
        stack = self.aws("cloudformation", "describe-stacks", "--stack-name", "Watched")["Stacks"][0]
        self.assertEqual({p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}["AlarmTopicArn"], "")
        self.deploy_sh("--yes", "destroy", env={"IMGEDGE_STACK": "Watched"})
        dashboards = self.aws("cloudwatch", "list-dashboards")["DashboardEntries"]
        self.assertNotIn("Watched-operations", [d["DashboardName"] for d in dashboards], "destroy deletes the dashboard")

    def test_regional_mode_creates_the_function_its_permissions_and_its_dashboard(self):
        zip_path = Path(self.tmp.name) / "regional.zip"
        with zipfile.ZipFile(zip_path, "w") as z:
            z.writestr("bootstrap", "#!/bin/sh\necho stand-in for the Rust binary\n")
        policy = Path(self.tmp.name) / "regional-policy.json"
        policy.write_text('{"widths": [256, 512]}\n')
        env = {"IMGEDGE_STACK": "Regional", "IMGEDGE_MAX_BYTES": "1048576"}
        self.deploy_sh("deploy", "--mode", "regional", "--policy", str(policy), zip_path=zip_path, env=env)

        digest = hashlib.sha256(zip_path.read_bytes()).digest()
        self.aws("s3api", "head-object", "--bucket", f"regional-artifacts-{ACCOUNT}", "--key", f"regional-function/{digest.hex()}.zip")
        fn = self.aws("lambda", "get-function", "--function-name", "Regional-regional")["Configuration"]
        self.assertEqual((fn["Runtime"], fn["Handler"]), ("provided.al2023", "bootstrap"))
        self.assertEqual(fn["CodeSha256"], base64.b64encode(digest).decode())
        variables = {k: str(v) for k, v in fn["Environment"]["Variables"].items()}
        self.assertEqual(
            variables,
            {
                "IMGEDGE_BUCKET": f"regional-images-{ACCOUNT}",
                "IMGEDGE_MAX_PIXELS": "50000000",
                "IMGEDGE_MAX_BYTES": "1048576",
                "IMGEDGE_POLICY": '{"widths":[256,512]}',
            },
        )
        with self.assertRaises(AssertionError, msg="no Lambda@Edge function in regional mode"):
            self.aws("lambda", "get-function", "--function-name", "Regional-origin-request")

        statements = json.loads(self.aws("lambda", "get-policy", "--function-name", "Regional-regional")["Policy"])["Statement"]
        by_action = {s["Action"]: s for s in statements}
        self.assertEqual(set(by_action), {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"})
        for s in statements:
            self.assertEqual(s["Principal"], {"Service": "cloudfront.amazonaws.com"})
            self.assertIn(":distribution/", s["Condition"]["ArnLike"]["AWS:SourceArn"])
        self.assertEqual(by_action["lambda:InvokeFunctionUrl"]["FunctionUrlAuthType"], "AWS_IAM")
        self.assertIs(by_action["lambda:InvokeFunction"]["InvokedViaFunctionUrl"], True)

        body = json.loads(self.aws("cloudwatch", "get-dashboard", "--dashboard-name", "Regional-operations")["DashboardBody"])
        charted = {m[3] for w in body["widgets"] for m in w.get("properties", {}).get("metrics", []) if m[:2] == ["AWS/Lambda", "Invocations"]}
        self.assertEqual(charted, {"Regional-regional"}, "the regional function, not a Lambda@Edge replica")

        self.deploy_sh("--yes", "destroy", env={"IMGEDGE_STACK": "Regional"})
        with self.assertRaises(AssertionError):
            self.aws("lambda", "get-function", "--function-name", "Regional-regional")

    def test_destroy_reads_the_buckets_from_the_stack_and_asks_first(self):
        # Deployed with bucket names the destroying shell does not know (no IMGEDGE_* below).
        names = {"IMGEDGE_STACK": "Gallery", "IMGEDGE_BUCKET": "gallery-masters-test", "IMGEDGE_ARTIFACT_BUCKET": "gallery-zips-test"}
        zip_path = self.zip_with("gallery.zip", "export const handler = async (event) => event.Records[0].cf.request;\n")
        self.deploy_sh("deploy", zip_path=zip_path, env=names)
        stack = {"IMGEDGE_STACK": "Gallery"}

        # No terminal and no --yes: refused, the stack untouched, but the plan was shown.
        run = self.deploy_sh("destroy", env=stack, ok=False)
        self.assertEqual(run.returncode, 1)
        self.assertIn("input is not a terminal", run.stderr)
        self.assertIn("s3://gallery-masters-test", run.stderr)
        self.assertIn("s3://gallery-zips-test", run.stderr)
        self.assertRegex(run.stderr, r"delete +EdgeFunction \(AWS::Lambda::Function\)")
        self.assertRegex(run.stderr, r"keep +ImageBucket \(AWS::S3::Bucket\) gallery-masters-test")
        status = self.aws("cloudformation", "describe-stacks", "--stack-name", "Gallery")["Stacks"][0]["StackStatus"]
        self.assertEqual(status, "CREATE_COMPLETE")

        run = self.deploy_sh("--yes", "destroy", env=stack)
        self.assertIn("stack Gallery deleted", run.stderr)
        self.assertIn("Left on purpose: s3://gallery-masters-test (images) and s3://gallery-zips-test", run.stderr)
        self.assertNotIn("gallery-images-", run.stderr, "no name derived from the stack name")
        stacks = self.aws("cloudformation", "list-stacks")["StackSummaries"]
        self.assertTrue(all(s["StackStatus"] == "DELETE_COMPLETE" for s in stacks if s["StackName"] == "Gallery"))
        buckets = [b["Name"] for b in self.aws("s3api", "list-buckets")["Buckets"]]
        self.assertIn("gallery-masters-test", buckets)
        self.assertIn("gallery-zips-test", buckets)

        # Again: the stack is gone, and destroy says so instead of deleting anything.
        run = self.deploy_sh("--yes", "destroy", env=stack, ok=False)
        self.assertEqual(run.returncode, 1)
        self.assertIn("stack Gallery does not exist", run.stderr)


if __name__ == "__main__":
    unittest.main()
