"""infra/package.sh without a Rust build (--skip-build, a stand-in bootstrap): what it writes
into config.json, and that a bad --policy stops it before anything is packaged.

Run: python -m unittest discover -s infra/tests   (infra/test.sh does; needs node for the
policy check, as package.sh does)
"""

import json
import subprocess
import tempfile
import unittest
import zipfile
from pathlib import Path

INFRA = Path(__file__).resolve().parent.parent
PACKAGE = INFRA / "package.sh"
POLICIES = json.loads((INFRA.parent / "tests" / "fixtures" / "policy-cases.json").read_text(encoding="utf-8"))


class Package(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", str(self.tmp)], check=False))
        bootstrap = self.tmp / "target" / "lambda" / "bootstrap" / "bootstrap"
        bootstrap.parent.mkdir(parents=True)
        bootstrap.write_text("#!/bin/sh\n")
        bootstrap.chmod(0o755)
        self.zip = self.tmp / "edge-function.zip"

    def package(self, *args, env=None):
        return subprocess.run(
            ["bash", str(PACKAGE), "--bucket", 'my-bucket-"quoted"', "--skip-build", "--out", str(self.zip), *args],
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.tmp), "CARGO_TARGET_DIR": str(self.tmp / "target"), **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def config(self):
        with zipfile.ZipFile(self.zip) as z:
            self.assertEqual(sorted(z.namelist()), ["bootstrap", "config.json", "index.mjs"])
            return json.loads(z.read("config.json"))

    def test_config_json_holds_the_policy_object_as_in_the_file(self):
        policy = POLICIES["policies"]["presets"]
        path = self.tmp / "policy.json"
        path.write_text(json.dumps(policy, indent=1))
        for args, env in ((["--policy", str(path)], None), ([], {"IMGEDGE_POLICY_FILE": str(path)})):
            run = self.package(*args, env=env)
            self.assertEqual(run.returncode, 0, run.stderr)
            config = self.config()
            self.assertEqual(config["policy"], policy, "key 'policy', the object as the file holds it")
            self.assertEqual(config["bucket"], 'my-bucket-"quoted"', "escaped as JSON")
            self.zip.unlink()

    def test_without_a_policy_there_is_no_policy_key(self):
        run = self.package()
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertNotIn("policy", self.config())
        self.zip.unlink()
        run = self.package(env={"IMGEDGE_POLICY_FILE": ""})
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertNotIn("policy", self.config())

    def test_a_bad_policy_stops_packaging_naming_the_file(self):
        bad = [b["policy"] for b in POLICIES["bad_policies"][:5]]
        texts = [json.dumps(b) for b in bad] + ['{"widths": [256]', '{"widths": [NaN]}', "[]", ""]
        for i, text in enumerate(texts):
            with self.subTest(text):
                path = self.tmp / f"bad-{i}.json"
                path.write_text(text)
                run = self.package("--policy", str(path))
                self.assertNotEqual(run.returncode, 0, text)
                self.assertIn(str(path), run.stderr)
                self.assertIn("nothing was packaged", run.stderr)
                self.assertFalse(self.zip.exists(), "no zip is written")
        run = self.package("--policy", str(self.tmp / "missing.json"))
        self.assertEqual(run.returncode, 2)
        self.assertIn("missing.json: no such readable file", run.stderr)


if __name__ == "__main__":
    unittest.main()
