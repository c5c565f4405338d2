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


class PackageRegional(unittest.TestCase):
    """--mode regional: the binary alone as bootstrap at the zip's root, and the glibc it needs
    checked against Lambda's (2.34). readelf is a stand-in printing what the binary needs."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", str(self.tmp)], check=False))
        binary = self.tmp / "target" / "aarch64-unknown-linux-gnu" / "release" / "regional"
        binary.parent.mkdir(parents=True)
        binary.write_bytes(b"\x7fELF stand-in")
        binary.chmod(0o755)
        self.bin = self.tmp / "bin"
        self.bin.mkdir()
        self.zip = self.tmp / "regional-function.zip"

    def package(self, needs, *args):
        readelf = self.bin / "readelf"
        readelf.write_text("#!/bin/sh\n" + "".join(f"echo '  0x0010: Name: GLIBC_{v}  Flags: none'\n" for v in needs))
        readelf.chmod(0o755)
        return subprocess.run(
            ["bash", str(PACKAGE), "--mode", "regional", "--skip-build", "--out", str(self.zip), *args],
            env={"PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin", "HOME": str(self.tmp), "CARGO_TARGET_DIR": str(self.tmp / "target")},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def test_the_zip_holds_the_binary_as_bootstrap_and_nothing_else(self):
        run = self.package(["2.17", "2.34", "2.28"])
        self.assertEqual(run.returncode, 0, run.stderr)
        with zipfile.ZipFile(self.zip) as z:
            self.assertEqual(z.namelist(), ["bootstrap"])
            self.assertEqual(z.read("bootstrap"), b"\x7fELF stand-in")
            self.assertEqual((z.getinfo("bootstrap").external_attr >> 16) & 0o777, 0o755, "executable")
        self.assertIn("needs glibc 2.34", run.stdout)

    def test_a_binary_needing_a_newer_glibc_than_lambdas_is_refused(self):
        for needs in (["2.17", "2.35"], ["2.36", "2.4"]):
            with self.subTest(needs):
                run = self.package(needs)
                self.assertEqual(run.returncode, 1, run.stdout)
                self.assertIn("Lambda (Amazon Linux 2023) has 2.34", run.stderr)
                self.assertFalse(self.zip.exists())

    def test_settings_are_not_packaged_and_bad_choices_stop_it(self):
        run = self.package(["2.34"], "--bucket", "b")
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn("the regional zip holds no settings", run.stderr)
        for args, message in ((["--arch", "arm"], "--arch must be arm64 or x86_64"), (["--mode", "lambda"], "--mode must be edge or regional")):
            run = self.package(["2.34"], *args)
            self.assertEqual(run.returncode, 2, run.stderr)
            self.assertIn(message, run.stderr)


if __name__ == "__main__":
    unittest.main()
