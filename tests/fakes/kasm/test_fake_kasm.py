#!/usr/bin/env python3
"""Self-test of fake_kasm.py: it starts the fake over TLS and checks that it follows the Kasm
Workspaces contract (RPC-style POSTs, the three credential carriers and their status codes,
200 + error_message failures, provisioning states, hyphen-insensitive ids, whole lists) and that
its test controls (/_fake/...) work."""

import base64
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "fake_kasm.py")
KEY, SECRET = "self-test-key", "self-test-secret-abc"
SHARED_USER = "5a0c3f1e7b2d4e6f8a9b0c1d2e3f4a5b"
CHROME = "0b7a4e8f9c3d4f2a8e6b1d5c7a9f3e21"


def hyphenate(hex32):
    return "-".join([hex32[:8], hex32[8:12], hex32[12:16], hex32[16:20], hex32[20:]])


class FakeKasmTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="fake-kasm-")
        cls.cert = os.path.join(cls.dir, "cert.pem")
        cls.key = os.path.join(cls.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        cls.key, "-out", cls.cert, "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        cls.proc = subprocess.Popen([sys.executable, FAKE, "--cert", cls.cert, "--key", cls.key,
                                     "--api-key", "%s:%s" % (KEY, SECRET)],
                                    stdout=subprocess.PIPE, text=True)
        line = cls.proc.stdout.readline()
        if not line.startswith("READY "):
            cls.proc.kill()
            raise RuntimeError("the fake did not print READY: %r" % line)
        cls.port = int(line.split()[1])
        cls.context = ssl.create_default_context(cafile=cls.cert)

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(10)
        cls.proc.stdout.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        self.raw("POST", "/_fake/reset")

    def raw(self, method, path, body=None, headers=None, data=None):
        conn = http.client.HTTPSConnection("localhost", self.port, context=self.context,
                                           timeout=20)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        if data is None and body is not None:
            data = json.dumps(body)
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        text = r.read().decode()
        conn.close()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        return r.status, parsed, text, r.getheader("Content-Type")

    def api(self, method, fields=None, creds=True):
        body = dict(fields or {})
        if creds:
            body.update({"api_key": KEY, "api_key_secret": SECRET})
        status, parsed, _, _ = self.raw("POST", "/api/public/" + method, body)
        return status, parsed

    def state(self, update):
        self.assertEqual(self.raw("POST", "/_fake/state", update)[0], 200)

    # ---- transport and auth ----------------------------------------------------------------
    def test_only_post_under_api_public(self):
        status, _, _, ctype = self.raw("GET", "/api/public/get_kasms")
        self.assertEqual(status, 405)
        self.assertIn("text/html", ctype)
        self.assertEqual(self.raw("POST", "/api/public/no_such_method", {})[0], 404)
        self.assertEqual(self.raw("POST", "/api/v2/get_kasms", {})[0], 404)
        self.assertEqual(self.api("get_kasms")[0], 200)

    def test_body_credentials_and_their_refusals(self):
        self.assertEqual(self.api("get_kasms", creds=False), (403, {"error_message": "Access Denied"}))
        status, body = self.api("get_kasms", {"api_key": KEY, "api_key_secret": "wrong"},
                                creds=False)
        self.assertEqual((status, body["error_message"]), (403, "Access Denied"))
        # A misspelt secret field fails auth.
        status, _ = self.api("get_kasms", {"api_key": KEY, "api_secret": SECRET}, creds=False)
        self.assertEqual(status, 403)
        self.state({"wrong_key_status": 401})
        self.assertEqual(self.api("get_kasms", creds=False)[0], 401)

    def test_basic_and_header_credentials(self):
        basic = base64.b64encode(("%s:%s" % (KEY, SECRET)).encode()).decode()
        status, body, _, _ = self.raw("POST", "/api/public/get_kasms", {},
                                      {"Authorization": "Basic " + basic})
        self.assertEqual(status, 200, body)
        bad = base64.b64encode(("%s:nope" % KEY).encode()).decode()
        self.assertEqual(self.raw("POST", "/api/public/get_kasms", {},
                                  {"Authorization": "Basic " + bad})[0], 403)
        status, _, _, _ = self.raw("POST", "/api/public/get_kasms", {},
                                   {"api-key": KEY, "api-key-secret": SECRET})
        self.assertEqual(status, 200)
        # Styles can be switched off: a server that reads only the body refuses Basic.
        self.state({"auth_styles": ["body"]})
        self.assertEqual(self.raw("POST", "/api/public/get_kasms", {},
                                  {"Authorization": "Basic " + basic})[0], 403)
        self.assertEqual(self.api("get_kasms")[0], 200)

    def test_expired_read_only_and_missing_permission(self):
        keys = {KEY: {"secret": SECRET, "expired": True, "read_only": False, "denied": []}}
        self.state({"keys": keys})
        self.assertEqual(self.api("get_kasms"), (401, {"error_message": "Access has expired"}))
        keys[KEY].update({"expired": False, "read_only": True})
        self.state({"keys": keys})
        self.assertEqual(self.api("get_kasms")[0], 200)
        self.assertEqual(self.api("request_kasm", {"user_id": SHARED_USER}),
                         (401, {"error_message": "Unauthorized"}))
        keys[KEY].update({"read_only": False, "denied": ["get_users"]})
        self.state({"keys": keys, "no_permission_status": 403})
        self.assertEqual(self.api("get_users"), (403, {"error_message": "Unauthorized"}))

    # ---- sessions ----------------------------------------------------------------------------
    def test_session_starts_then_runs_then_is_destroyed(self):
        self.state({"provision_delay_s": 0.2, "provision_polls": 2})
        status, k = self.api("request_kasm", {"user_id": SHARED_USER, "image_id": CHROME,
                                              "enable_sharing": False,
                                              "environment": {"HELM": "1"}})
        self.assertEqual(status, 200, k)
        self.assertEqual(k["status"], "starting")
        self.assertIsNone(k["share_id"])
        self.assertTrue(k["kasm_url"].startswith("/#/connect/kasm/" + k["kasm_id"] + "/"))
        ids = {"user_id": SHARED_USER, "kasm_id": k["kasm_id"]}
        status, first = self.api("get_kasm_status", ids)
        self.assertEqual(status, 200)
        self.assertEqual(first["error_message"], "This session is currently starting.")
        self.assertEqual(first["operational_status"], "starting")
        self.assertNotIn("kasm", first)
        time.sleep(0.25)
        _, second = self.api("get_kasm_status", ids)
        self.assertEqual(second["kasm"]["operational_status"], "running")
        self.assertGreater(second["operational_progress"] if "operational_progress" in second
                           else 100, first["operational_progress"])
        self.assertEqual(second["kasm"]["image"]["image_id"], CHROME)
        self.assertIn("expiration_date", second["kasm"])
        # Hyphenated ids are the same ids.
        hyph = {"user_id": hyphenate(SHARED_USER), "kasm_id": hyphenate(k["kasm_id"])}
        self.assertEqual(self.api("get_kasm_status", hyph)[0], 200)
        _, listed = self.api("get_kasms")
        self.assertEqual([r["kasm_id"] for r in listed["kasms"]], [k["kasm_id"]])
        self.assertEqual(self.api("destroy_kasm", hyph), (200, {}))
        self.assertEqual(self.api("get_kasm_status", ids),
                         (400, {"error_message": "Invalid kasm_id (%s)" % k["kasm_id"]}))
        self.assertEqual(self.api("destroy_kasm", ids)[0], 400)
        self.assertEqual(self.api("get_kasms")[1]["kasms"], [])
        state = self.raw("GET", "/_fake/state")[1]
        self.assertEqual(len(state["destroyed"]), 1)

    def test_business_failures_are_200_with_error_message(self):
        status, body = self.api("request_kasm", {"user_id": SHARED_USER,
                                                 "image_id": "ffffffffffffffffffffffffffffffff"})
        self.assertEqual((status, body), (200, {"error_message": "No Default Image Found"}))
        self.state({"no_resources": True})
        status, body = self.api("request_kasm", {"user_id": SHARED_USER, "image_id": CHROME})
        self.assertEqual(status, 200)
        self.assertTrue(body["error_message"].startswith("No resources are available"))
        self.assertEqual(self.api("request_kasm", {"user_id": "00" * 16, "image_id": CHROME}),
                         (400, {"error_message": "Invalid user_id (%s)" % ("00" * 16)}))

    def test_users_create_list_delete(self):
        status, created = self.api("create_user", {"target_user": {"username": "helm-0a1b2c3d",
                                                                   "password": "x" * 24}})
        self.assertEqual(status, 200, created)
        uid = created["user"]["user_id"]
        self.assertEqual(created["user"]["realm"], "local")
        self.assertEqual(self.api("create_user", {"target_user": {"username": "helm-0a1b2c3d"}}),
                         (200, {"error_message": "Username already exists"}))
        _, k = self.api("request_kasm", {"user_id": uid, "image_id": CHROME})
        _, users = self.api("get_users")
        self.assertIn("helm-0a1b2c3d", [u["username"] for u in users["users"]])
        _, got = self.api("get_user", {"target_user": {"user_id": hyphenate(uid)}})
        self.assertEqual(got["user"]["kasms"][0]["kasm_id"], k["kasm_id"])
        _, mine = self.api("get_user_kasms", {"user_id": uid})
        self.assertEqual(len(mine["kasms"]), 1)
        status, body = self.api("delete_user", {"target_user": {"user_id": uid}})
        self.assertEqual(status, 200)
        self.assertIn("error_message", body)
        self.assertEqual(self.api("delete_user", {"target_user": {"user_id": uid},
                                                  "force": True}), (200, {}))
        self.assertEqual(self.api("get_kasms")[1]["kasms"], [])
        self.assertEqual(self.api("get_user", {"target_user": {"user_id": uid}})[0], 400)

    def test_images_are_a_whole_list(self):
        _, images = self.api("get_images")
        self.assertEqual(len(images["images"]), 2)

    # ---- control ------------------------------------------------------------------------------
    def test_injection_recording_and_reset(self):
        self.raw("POST", "/_fake/inject", {"method": "get_kasms", "status": 500, "html": True,
                                           "skip": 1})
        self.assertEqual(self.api("get_kasms")[0], 200)
        status, parsed, _, ctype = self.raw("POST", "/api/public/get_kasms",
                                            {"api_key": KEY, "api_key_secret": SECRET})
        self.assertEqual((status, parsed), (500, None))
        self.assertIn("text/html", ctype)
        self.assertEqual(self.api("get_kasms")[0], 200)
        self.raw("POST", "/_fake/inject", {"status": 200, "times": 1,
                                           "body": {"error_message": "boom"}})
        self.assertEqual(self.api("get_users"), (200, {"error_message": "boom"}))
        rows = self.raw("GET", "/_fake/requests?kasm_method=get_kasms")[1]["requests"]
        self.assertEqual(len(rows), 3)
        self.assertEqual(rows[0]["json"]["api_key"], KEY)
        self.assertIn("time", rows[0])
        self.raw("POST", "/_fake/reset")
        self.assertEqual(self.raw("GET", "/_fake/requests")[1]["requests"], [])


if __name__ == "__main__":
    unittest.main()
