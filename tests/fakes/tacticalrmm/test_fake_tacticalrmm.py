#!/usr/bin/env python3
"""Self-test of fake_tacticalrmm.py: it starts the fake over TLS and checks that it follows the
Tactical RMM contract (auth shapes, trailing slashes, full arrays, DRF errors, offline agents)
and that its test controls (/_fake/...) work."""

import json
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep tests/fakes/common free of __pycache__
sys.path.insert(0, os.path.join(HERE, "..", "common"))
import fakebase_testing  # noqa: E402  (tests/fakes/common/fakebase_testing.py)

KEY = "self-test-key-abcdef"
OTHER_KEY = "self-test-other-key"


class FakeTacticalRmmTest(fakebase_testing.FakeTestCase):
    script = os.path.join(HERE, "fake_tacticalrmm.py")
    args = ("--api-key", KEY, "--api-key", OTHER_KEY)

    def setUp(self):
        self.call("POST", "/_fake/reset", key=None)

    def call(self, method, path, body=None, key=KEY):
        """(status, the body parsed as JSON (else its text; None when empty), headers)."""
        status, headers, text = self.fake.request(method, path, body,
                                                  headers={"X-API-KEY": key} if key else None)
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return status, parsed, headers

    def vendor_requests(self):
        return self.call("GET", "/_fake/requests", key=None)[1]["requests"]

    # ---- authentication ------------------------------------------------------------------
    def test_missing_unknown_expired_and_inactive_keys_get_drf_401_shapes(self):
        status, body, headers = self.call("GET", "/agents/", key=None)
        self.assertEqual((status, body), (401, {"detail": "Authentication credentials were not "
                                                          "provided."}))
        self.assertEqual(headers.get("WWW-Authenticate"), "Token")
        status, body, headers = self.call("GET", "/agents/", key="wrong")
        self.assertEqual((status, body), (401, {"detail": "Invalid token."}))
        self.assertEqual(headers.get("WWW-Authenticate"), "Token")
        self.call("POST", "/_fake/state", {"keys": {
            KEY: {"expired": True}, OTHER_KEY: {"inactive": True}}}, key=None)
        self.assertEqual(self.call("GET", "/agents/")[:2],
                         (401, {"detail": "The token has expired."}))
        self.assertEqual(self.call("GET", "/agents/", key=OTHER_KEY)[:2],
                         (401, {"detail": "User inactive or deleted."}))

    def test_read_only_key_is_refused_writes_with_403_but_reads(self):
        self.call("POST", "/_fake/state", {"keys": {KEY: {"read_only": True}}}, key=None)
        self.assertEqual(self.call("GET", "/agents/")[0], 200)
        status, body, _ = self.call("POST", "/agents/AcmeAgentWin01/cmd/",
                                    {"shell": "cmd", "cmd": "dir", "timeout": 5,
                                     "run_as_user": False})
        self.assertEqual((status, body),
                         (403, {"detail": "You do not have permission to perform this action."}))

    # ---- routing -------------------------------------------------------------------------
    def test_paths_without_trailing_slash_are_404_even_before_auth(self):
        self.assertEqual(self.call("GET", "/agents")[0], 404)
        self.assertEqual(self.call("GET", "/agents", key=None)[0], 404)
        self.assertEqual(self.call("GET", "/agents/AcmeAgentWin01")[0], 404)
        self.assertEqual(self.call("POST", "/agents/AcmeAgentWin01/cmd",
                                   {"shell": "cmd", "cmd": "x", "timeout": 1,
                                    "run_as_user": False})[0], 404)
        self.assertEqual(self.call("GET", "/api/agents/")[0], 404)
        self.assertEqual(self.call("GET", "/agents/")[0], 200)

    # ---- agents --------------------------------------------------------------------------
    def test_agent_list_is_one_full_array_filtered_by_client_site_and_type(self):
        status, rows, _ = self.call("GET", "/agents/")
        self.assertEqual(status, 200)
        self.assertEqual(len(rows), 4)
        self.assertEqual({r["client_name"] for r in rows}, {"Acme Dental", "Globex"})
        for field in ("agent_id", "hostname", "site_name", "plat", "status", "last_seen",
                      "needs_reboot", "maintenance_mode", "monitoring_type"):
            self.assertIn(field, rows[0])
        acme = self.call("GET", "/agents/?client=1")[1]
        self.assertEqual(len(acme), 3)
        self.assertTrue(all(r["client_name"] == "Acme Dental" for r in acme))
        self.assertEqual([r["hostname"] for r in self.call("GET", "/agents/?site=2")[1]],
                         ["ACME-SRV01"])
        # site wins over client, as in the real view
        self.assertEqual(len(self.call("GET", "/agents/?client=1&site=3")[1]), 1)
        servers = self.call("GET", "/agents/?monitoring_type=server")[1]
        self.assertEqual({r["hostname"] for r in servers}, {"ACME-SRV01", "globex-web1"})
        self.assertEqual(self.call("GET", "/agents/?monitoring_type=toaster")[:2],
                         (400, "monitoring type does not exist"))
        slim = self.call("GET", "/agents/?detail=false")[1]
        self.assertEqual(set(slim[0]), {"id", "hostname", "agent_id", "client", "site"})

    def test_agent_detail_names_its_client_and_site_id_and_404s_in_drf_shape(self):
        status, agent, _ = self.call("GET", "/agents/GlobexAgentLx1/")
        self.assertEqual(status, 200)
        self.assertEqual((agent["client"], agent["site"], agent["site_name"]),
                         ("Globex", 3, "HQ"))
        self.assertEqual(self.call("GET", "/agents/nope/")[:2], (404, {"detail": "Not found."}))

    def test_cmd_echoes_deterministically_and_offline_agent_is_a_bare_string_400(self):
        ok = self.call("POST", "/agents/AcmeAgentWin01/cmd/",
                       {"shell": "powershell", "cmd": "Get-Date", "timeout": 5,
                        "run_as_user": False})
        self.assertEqual(ok[:2], (200, "[powershell@ACME-PC01] Get-Date\n"))
        started = time.monotonic()
        off = self.call("POST", "/agents/AcmeAgentOff01/cmd/",
                        {"shell": "cmd", "cmd": "dir", "timeout": 1, "run_as_user": False})
        self.assertEqual(off[:2], (400, "Unable to contact the agent"))
        self.assertGreaterEqual(time.monotonic() - started, 0.15)  # honours timeout, capped
        self.assertEqual(self.call("POST", "/agents/AcmeAgentWin01/cmd/",
                                   {"shell": "cmd", "cmd": "dir"})[0], 500)
        self.assertEqual(self.call("POST", "/agents/AcmeAgentWin01/cmd/",
                                   {"shell": "zsh", "cmd": "x", "timeout": 1,
                                    "run_as_user": False})[:2],
                         (400, {"shell": ['"zsh" is not a valid choice.']}))
        self.assertEqual(self.call("POST", "/agents/nope/cmd/",
                                   {"shell": "cmd", "cmd": "x", "timeout": 1,
                                    "run_as_user": False})[0], 404)

    def test_runscript_wait_output_offline_shapes_and_validation(self):
        body = {"script": 1, "output": "wait", "args": ["-v"], "env_vars": ["A=1"],
                "timeout": 30, "run_as_user": False}
        status, out, _ = self.call("POST", "/agents/AcmeAgentWin01/runscript/", body)
        self.assertEqual(status, 200)
        self.assertEqual(out, 'Clear DNS cache on ACME-PC01 args=["-v"] env=["A=1"]\n')
        self.assertEqual(self.call("POST", "/agents/AcmeAgentOff01/runscript/", body)[:2],
                         (200, "timeout"))
        self.call("POST", "/_fake/state", {"runscript_offline": "unable400"}, key=None)
        self.assertEqual(self.call("POST", "/agents/AcmeAgentOff01/runscript/", body)[:2],
                         (400, "Unable to contact the agent"))
        forget = dict(body, output="forget")
        self.assertEqual(self.call("POST", "/agents/AcmeAgentWin01/runscript/", forget)[:2],
                         (200, "Clear DNS cache will now be run on ACME-PC01"))
        bad = dict(body, output="later")
        self.assertEqual(self.call("POST", "/agents/AcmeAgentWin01/runscript/", bad)[:2],
                         (400, {"output": ['"later" is not a valid choice.']}))
        self.assertEqual(self.call("POST", "/agents/AcmeAgentWin01/runscript/",
                                   dict(body, script=99))[0], 404)

    def test_scripts_and_clients(self):
        scripts = self.call("GET", "/scripts/")[1]
        self.assertEqual([s["id"] for s in scripts], [1, 2, 3])
        self.assertNotIn("script_body", scripts[0])
        self.assertEqual(self.call("GET", "/scripts/2/")[1]["script_body"], "df -h")
        clients = self.call("GET", "/clients/")[1]
        self.assertEqual([(c["id"], c["name"]) for c in clients],
                         [(1, "Acme Dental"), (2, "Globex")])
        self.assertEqual([s["id"] for s in clients[0]["sites"]], [1, 2])

    # ---- controls ------------------------------------------------------------------------
    def test_every_vendor_request_is_recorded_with_headers_query_and_body(self):
        self.call("GET", "/agents/?client=2")
        self.call("POST", "/agents/AcmeAgentWin01/cmd/",
                  {"shell": "cmd", "cmd": "whoami", "timeout": 3, "run_as_user": False})
        self.call("GET", "/agents", key=None)
        seen = self.vendor_requests()
        self.assertEqual([(r["method"], r["path"]) for r in seen],
                         [("GET", "/agents/"), ("POST", "/agents/AcmeAgentWin01/cmd/"),
                          ("GET", "/agents")])
        self.assertEqual(seen[0]["params"], {"client": "2"})
        self.assertEqual(seen[0]["headers"]["X-API-KEY"], KEY)
        self.assertEqual(seen[1]["json"]["cmd"], "whoami")
        self.assertNotIn("X-API-KEY", seen[2]["headers"])
        self.call("POST", "/_fake/reset", key=None)
        self.assertEqual(self.vendor_requests(), [])

    def test_injected_faults_apply_to_the_next_or_nth_requests(self):
        self.call("POST", "/_fake/inject", {"status": 503, "times": 2}, key=None)
        self.assertEqual(self.call("GET", "/agents/")[0], 503)
        self.assertEqual(self.call("GET", "/scripts/")[0], 503)
        self.assertEqual(self.call("GET", "/agents/")[0], 200)
        self.call("POST", "/_fake/inject", {"status": 429, "skip": 1,
                                            "headers": {"Retry-After": "7"}}, key=None)
        self.assertEqual(self.call("GET", "/agents/")[0], 200)
        status, _, headers = self.call("GET", "/agents/")
        self.assertEqual((status, headers.get("Retry-After")), (429, "7"))
        self.assertEqual(self.call("GET", "/agents/")[0], 200)
        self.call("POST", "/_fake/inject", {"status": 401, "body": {"detail": "Invalid token."},
                                            "path_prefix": "/scripts/"}, key=None)
        self.assertEqual(self.call("GET", "/agents/")[0], 200)
        self.assertEqual(self.call("GET", "/scripts/")[:2], (401, {"detail": "Invalid token."}))
        self.call("POST", "/_fake/inject", {"latency_ms": 300}, key=None)
        started = time.monotonic()
        self.assertEqual(self.call("GET", "/agents/")[0], 200)
        self.assertGreaterEqual(time.monotonic() - started, 0.3)

    def test_state_can_be_replaced_through_the_control_endpoint(self):
        self.call("POST", "/_fake/state", {"agents": [], "clients": []}, key=None)
        self.assertEqual(self.call("GET", "/agents/")[1], [])
        self.assertEqual(self.call("GET", "/_fake/state", key=None)[1]["clients"], [])


if __name__ == "__main__":
    unittest.main()
