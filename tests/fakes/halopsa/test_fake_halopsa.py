#!/usr/bin/env python3
"""Self-test of fake_halopsa.py: it follows the HaloPSA contract (VENDOR_APIS.md 5a) — token
endpoint shapes and tenant rule, bearer and scope checks, pageinate, array bodies, id updates —
and its control endpoints (injections, recording, state)."""

import json
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep tests/fakes/common free of __pycache__
sys.path.insert(0, os.path.join(HERE, "..", "common"))
import fakebase_testing  # noqa: E402  (tests/fakes/common/fakebase_testing.py)


class Fake(fakebase_testing.FakeProcess):
    """One fake process with its own arguments, and HaloPSA's client side."""

    def json(self, method, path, body=None, headers=None, form=None):
        status, hdrs, text = self.request(method, path, body, headers, form)
        return status, hdrs, (json.loads(text) if text and text[0] in "[{" else text)

    def token(self, client_id="helm-client", secret="helm-secret", scope="all", tenant=None):
        path = "/auth/token" + ("?tenant=" + tenant if tenant else "")
        status, _, body = self.json("POST", path, form={
            "grant_type": "client_credentials", "client_id": client_id,
            "client_secret": secret, "scope": scope})
        assert status == 200, (status, body)
        return body["access_token"]

    def bearer(self, token):
        return {"Authorization": "Bearer " + token}


class FakeHaloTest(fakebase_testing.FakeTestCase):
    script = os.path.join(HERE, "fake_halopsa.py")
    args = ("--seed-tickets", "250", "--seed-clients", "5",
            "--credential", "reader:reader-secret:read:customers", "--default-limit", "40")
    process_class = Fake

    def setUp(self):
        self.fake.json("POST", "/_fake/reset", {"tokens": True, "state": True})
        self.fake.json("POST", "/_fake/state", {"token_lifetime": 3600})

    # -- token endpoint -------------------------------------------------------------------------

    def test_token_answers_the_oauth_shape(self):
        status, _, body = self.fake.json("POST", "/auth/token", form={
            "grant_type": "client_credentials", "client_id": "helm-client",
            "client_secret": "helm-secret", "scope": "all"})
        self.assertEqual(status, 200)
        self.assertEqual(body["token_type"], "Bearer")
        self.assertEqual(body["expires_in"], 3600)
        self.assertEqual(body["scope"], "all")
        self.assertTrue(body["access_token"])

    def test_token_refuses_bad_forms_and_credentials(self):
        good = {"grant_type": "client_credentials", "client_id": "helm-client",
                "client_secret": "helm-secret", "scope": "all"}
        cases = [
            (dict(good, client_secret="wrong"), "invalid_client"),
            (dict(good, client_id="nobody"), "invalid_client"),
            (dict(good, grant_type="password"), "unsupported_grant_type"),
            (dict(good, scope="all admin:everything"), "invalid_scope"),
            ({k: v for k, v in good.items() if k != "client_secret"}, "invalid_request"),
        ]
        for form, error in cases:
            status, _, body = self.fake.json("POST", "/auth/token", form=form)
            self.assertEqual(status, 400, form)
            self.assertEqual(body["error"], error, form)
        # JSON instead of a form is refused too.
        status, _, body = self.fake.json("POST", "/auth/token", body=good)
        self.assertEqual((status, body["error"]), (400, "invalid_request"))
        # A credential limited to read:customers cannot ask for more.
        status, _, body = self.fake.json("POST", "/auth/token", form={
            "grant_type": "client_credentials", "client_id": "reader",
            "client_secret": "reader-secret", "scope": "read:tickets"})
        self.assertEqual((status, body["error"]), (400, "invalid_scope"))

    def test_hosted_mode_needs_a_known_tenant(self):
        hosted = self.start_fake("--tenant", "contoso")
        try:
            form = {"grant_type": "client_credentials", "client_id": "helm-client",
                    "client_secret": "helm-secret", "scope": "all"}
            self.assertEqual(hosted.json("POST", "/auth/token", form=form)[0], 400)
            self.assertEqual(hosted.json("POST", "/auth/token?tenant=other", form=form)[0], 400)
            self.assertTrue(hosted.token(tenant="contoso"))
        finally:
            hosted.stop()

    def test_a_config_file_sets_credentials_and_seed_data(self):
        config = os.path.join(self.dir, "config.json")
        with open(config, "w", encoding="utf-8") as f:
            json.dump({"credentials": {"cfg": {"secret": "cfg-secret", "scopes": ["all"]}},
                       "seed": {"tickets": 3, "clients": 1}, "token_lifetime": 60}, f)
        configured = self.start_fake("--config", config)
        try:
            token = configured.token("cfg", "cfg-secret")
            _, _, body = configured.json("GET", "/api/Tickets", headers=configured.bearer(token))
            self.assertEqual(body["record_count"], 3)
            status, _, _ = configured.json("POST", "/auth/token", form={
                "grant_type": "client_credentials", "client_id": "helm-client",
                "client_secret": "helm-secret", "scope": "all"})
            self.assertEqual(status, 400, "the file's credentials replace the defaults")
        finally:
            configured.stop()

    # -- bearer and scope ---------------------------------------------------------------------

    def test_resource_server_wants_a_live_bearer_with_the_scope(self):
        self.assertEqual(self.fake.request("GET", "/api/Tickets")[0], 401)
        self.assertEqual(self.fake.request("GET", "/api/Tickets",
                                           headers=self.fake.bearer("forged"))[0], 401)
        self.fake.json("POST", "/_fake/state", {"token_lifetime": 1})
        token = self.fake.token()
        self.assertEqual(self.fake.request("GET", "/api/Tickets",
                                           headers=self.fake.bearer(token))[0], 200)
        time.sleep(1.2)
        self.assertEqual(self.fake.request("GET", "/api/Tickets",
                                           headers=self.fake.bearer(token))[0], 401)
        reader = self.fake.token("reader", "reader-secret", "read:customers")
        self.assertEqual(self.fake.request("GET", "/api/Client",
                                           headers=self.fake.bearer(reader))[0], 200)
        self.assertEqual(self.fake.request("GET", "/api/Tickets",
                                           headers=self.fake.bearer(reader))[0], 403)

    def test_revoking_tokens_makes_them_fail(self):
        token = self.fake.token()
        self.fake.json("POST", "/_fake/state", {"revoke_tokens": True})
        self.assertEqual(self.fake.request("GET", "/api/Tickets",
                                           headers=self.fake.bearer(token))[0], 401)

    # -- paging ---------------------------------------------------------------------------------

    def test_pageinate_pages_and_counts(self):
        auth = self.fake.bearer(self.fake.token())
        status, _, body = self.fake.json(
            "GET", "/api/Tickets?pageinate=true&page_size=30&page_no=3&client_id=2", headers=auth)
        self.assertEqual(status, 200)
        self.assertEqual(body["record_count"], 50)
        self.assertEqual((body["page_no"], body["page_size"]), (3, 30))
        self.assertEqual(len(body["tickets"]), 0)
        status, _, body = self.fake.json(
            "GET", "/api/Tickets?pageinate=true&page_size=30&page_no=2&client_id=2", headers=auth)
        self.assertEqual(len(body["tickets"]), 20)
        self.assertTrue(all(t["client_id"] == 2 for t in body["tickets"]))

    def test_page_size_is_ignored_without_pageinate(self):
        auth = self.fake.bearer(self.fake.token())
        status, _, body = self.fake.json("GET", "/api/Tickets?page_size=5&page_no=3", headers=auth)
        self.assertEqual(status, 200)
        self.assertEqual(len(body["tickets"]), 40)  # --default-limit
        self.assertEqual(body["tickets"][0]["id"], 1)
        self.assertEqual(body["record_count"], 250)

    def test_query_names_and_paths_are_case_insensitive(self):
        auth = self.fake.bearer(self.fake.token())
        status, _, body = self.fake.json("GET", "/API/tickets?PageInate=true&Page_Size=2",
                                         headers=auth)
        self.assertEqual((status, len(body["tickets"])), (200, 2))

    def test_clients_hide_inactive_ones_unless_asked(self):
        self.fake.json("POST", "/_fake/state", {"seed": {"tickets": 0, "clients": 14}})
        auth = self.fake.bearer(self.fake.token())
        _, _, active = self.fake.json("GET", "/api/Client?pageinate=true&page_size=50",
                                      headers=auth)
        _, _, every = self.fake.json("GET", "/api/Client?pageinate=true&page_size=50"
                                     "&includeinactive=true", headers=auth)
        self.assertEqual(active["record_count"], 12)
        self.assertEqual(every["record_count"], 14)

    # -- writes ---------------------------------------------------------------------------------

    def test_post_wants_an_array_and_id_means_update(self):
        auth = self.fake.bearer(self.fake.token())
        status, _, body = self.fake.json("POST", "/api/Tickets",
                                         {"summary": "object body", "client_id": 1}, auth)
        self.assertEqual(status, 400)
        self.assertIn("ClassName", body)
        status, _, created = self.fake.json("POST", "/api/Tickets",
                                            [{"summary": "new", "client_id": 3}], auth)
        self.assertEqual(status, 201)
        self.assertIsInstance(created, dict)
        self.assertEqual((created["id"], created["client_id"]), (251, 3))
        status, _, updated = self.fake.json("POST", "/api/Tickets",
                                            [{"id": 251, "status_id": 2}], auth)
        self.assertEqual((status, updated["id"], updated["status_id"]), (200, 251, 2))
        self.assertEqual(updated["summary"], "new")
        status, _, body = self.fake.json("POST", "/api/Tickets", [{"summary": "x",
                                                                   "client_id": 99}], auth)
        self.assertEqual(status, 400)
        self.assertIn("Message", body)
        status, _, body = self.fake.json("POST", "/api/Tickets", [{"id": 9999, "summary": "x"}],
                                         auth)
        self.assertEqual(status, 404)
        status, _, body = self.fake.json("POST", "/api/Tickets", [{"summary": "a", "client_id": 1},
                                                                  {"summary": "b",
                                                                   "client_id": 2}], auth)
        self.assertEqual((status, len(body)), (201, 2))
        status, _, text = self.fake.request("POST", "/api/Tickets", b"[{not json", auth)
        self.assertEqual(status, 400)

    def test_actions_add_notes_to_existing_tickets(self):
        auth = self.fake.bearer(self.fake.token())
        status, _, action = self.fake.json(
            "POST", "/api/Actions",
            [{"ticket_id": 7, "note": "called the user", "outcome": "Note",
              "hiddenfromuser": True}], auth)
        self.assertEqual(status, 201)
        self.assertEqual((action["ticket_id"], action["hiddenfromuser"]), (7, True))
        status, _, body = self.fake.json("POST", "/api/Actions",
                                         [{"ticket_id": 9999, "note": "x"}], auth)
        self.assertEqual(status, 400)
        self.assertEqual(body["ClassName"], "HaloException")
        _, _, listed = self.fake.json("GET", "/api/Actions?ticket_id=7", headers=auth)
        self.assertEqual(listed["record_count"], 1)

    # -- control endpoints ----------------------------------------------------------------------

    def test_injections_on_the_nth_request_and_for_the_next_n(self):
        auth = self.fake.bearer(self.fake.token())
        self.fake.json("POST", "/_fake/inject", {"status": 429, "retry_after": 3, "nth": 2,
                                                 "path": "/api/"})
        self.assertEqual(self.fake.request("GET", "/api/Tickets", headers=auth)[0], 200)
        status, headers, _ = self.fake.request("GET", "/api/Tickets", headers=auth)
        self.assertEqual((status, headers.get("Retry-After")), (429, "3"))
        self.assertEqual(self.fake.request("GET", "/api/Tickets", headers=auth)[0], 200)
        self.fake.json("POST", "/_fake/inject", {"status": 503, "count": 2})
        self.assertEqual(self.fake.request("GET", "/api/Tickets", headers=auth)[0], 503)
        self.assertEqual(self.fake.request("GET", "/api/Tickets", headers=auth)[0], 503)
        self.assertEqual(self.fake.request("GET", "/api/Tickets", headers=auth)[0], 200)
        self.fake.json("POST", "/_fake/inject", {"latency_ms": 400})
        started = time.monotonic()
        self.assertEqual(self.fake.request("GET", "/api/Tickets", headers=auth)[0], 200)
        self.assertGreaterEqual(time.monotonic() - started, 0.4)

    def test_every_request_is_recorded(self):
        self.fake.json("POST", "/_fake/reset", {})
        token = self.fake.token()
        self.fake.request("GET", "/api/Tickets?pageinate=true&page_no=2",
                          headers=self.fake.bearer(token))
        _, _, body = self.fake.json("GET", "/_fake/requests")
        requests = body["requests"]
        self.assertEqual([r["path"] for r in requests], ["/auth/token", "/api/Tickets"])
        self.assertIn("client_secret=helm-secret", requests[0]["body"])
        self.assertEqual(requests[1]["query"], {"pageinate": "true", "page_no": "2"})
        self.assertEqual(requests[1]["headers"]["Authorization"], "Bearer " + token)
        self.assertEqual(requests[1]["token_client_id"], "helm-client")
        self.assertEqual([r["status"] for r in requests], [200, 200])


if __name__ == "__main__":
    unittest.main()
