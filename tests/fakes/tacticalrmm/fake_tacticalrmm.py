#!/usr/bin/env python3
"""A faithful fake of the Tactical RMM REST API (../../../shared contract, section 3), for tests.

HTTPS on loopback (Python standard library only). Prints one line "READY <port>" on stdout once
it listens. Vendor behaviour follows the contract: X-API-KEY auth with DRF's 401 shapes and
"WWW-Authenticate: Token", 403 for a read-only key on writes, paths that must end with "/"
(404 otherwise), full arrays (no paging), DRF validation errors, bare-string 400s, and offline
agents (cmd/ -> 400 "Unable to contact the agent"; runscript/ with output "wait" -> 200
"timeout" by default). Test control lives under /_fake/ (no auth); see README.md.
"""

import copy
import json
import os
import sys
import time
from urllib.parse import parse_qs

sys.dont_write_bytecode = True  # keep tests/fakes/common free of __pycache__
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import fakebase  # noqa: E402  (tests/fakes/common/fakebase.py)

DEFAULT_KEY = "trmm-test-key-0123456789"

NO_CREDENTIALS = "Authentication credentials were not provided."
INVALID_TOKEN = "Invalid token."
EXPIRED = "The token has expired."
INACTIVE = "User inactive or deleted."
NO_PERMISSION = "You do not have permission to perform this action."
NOT_FOUND = "Not found."
OFFLINE = "Unable to contact the agent"

SHELLS = ("cmd", "powershell", "bash", "custom")
SCRIPT_OUTPUTS = ("wait", "forget", "email", "collector", "note")


def default_state(api_keys):
    """A small Tactical RMM: two clients, four agents (one offline), three scripts."""
    return {
        "keys": {k: {"user": "api", "expired": False, "inactive": False, "read_only": False}
                 for k in api_keys},
        "clients": [
            {"id": 1, "name": "Acme Dental", "sites": [{"id": 1, "name": "Main Office"},
                                                         {"id": 2, "name": "Branch"}]},
            {"id": 2, "name": "Globex", "sites": [{"id": 3, "name": "HQ"}]},
        ],
        "agents": [
            agent("AcmeAgentWin01", "ACME-PC01", 1, "windows", "online", "workstation",
                  "Windows 11 Pro, 64 bit (build 22631)", "203.0.113.10", "10.0.0.11, 192.168.50.11"),
            agent("AcmeAgentSrv01", "ACME-SRV01", 2, "windows", "online", "server",
                  "Windows Server 2022 Standard, 64 bit (build 20348)", "203.0.113.11", "10.0.1.5",
                  needs_reboot=True),
            agent("AcmeAgentOff01", "ACME-LAPTOP7", 1, "windows", "offline", "workstation",
                  "Windows 10 Pro, 64 bit (build 19045)", "203.0.113.12", "10.0.0.77"),
            agent("GlobexAgentLx1", "globex-web1", 3, "linux", "online", "server",
                  "Ubuntu 22.04.4 LTS", "198.51.100.7", "172.16.0.10", maintenance=True),
        ],
        "scripts": [
            script(1, "Clear DNS cache", "powershell", "Network", ["windows"], 30,
                   "Clear-DnsClientCache"),
            script(2, "Disk usage", "shell", "Storage", ["linux", "darwin"], 60, "df -h"),
            script(3, "Hidden helper", "cmd", "Misc", [], 90, "echo hidden", hidden=True),
        ],
        # Offline agents: how long cmd/ and runscript/ wait before answering, at most (seconds;
        # the real server waits the whole timeout + 2 s), and runscript's shape: "timeout200"
        # (current releases: 200 "timeout") or "unable400" (400 "Unable to contact the agent").
        "offline_wait_cap_s": 0.2,
        "runscript_offline": "timeout200",
    }


def agent(agent_id, hostname, site, plat, status, mon, os_name, public_ip, local_ips,
          needs_reboot=False, maintenance=False):
    return {
        "agent_id": agent_id, "hostname": hostname, "site": site, "plat": plat,
        "goarch": "amd64", "operating_system": os_name, "version": "2.8.0", "status": status,
        "monitoring_type": mon, "description": hostname.lower() + " description",
        "last_seen": "2026-11-29T23:59:00.000000Z", "boot_time": 1764460800.0,
        "logged_username": "jdoe" if plat == "windows" else "-", "needs_reboot": needs_reboot,
        "maintenance_mode": maintenance, "public_ip": public_ip, "local_ips": local_ips,
        "checks": {"total": 3, "passing": 3, "failing": 0, "warning": 0, "info": 0,
                   "has_failing_checks": False},
        "custom_fields": [],
    }


def script(sid, name, shell, category, platforms, timeout, body, hidden=False):
    return {
        "id": sid, "name": name, "description": name + " (fake)",
        "script_type": "userdefined" if sid != 1 else "builtin", "shell": shell, "args": [],
        "category": category, "favorite": False, "default_timeout": timeout, "syntax": "",
        "filename": None, "hidden": hidden, "supported_platforms": platforms,
        "run_as_user": False, "env_vars": [], "script_body": body,
        "script_hash": "%064x" % sid,
    }


class Fake(fakebase.DictStateFake):
    """The fake's state (one JSON object), its recorded requests and its pending fault injections
    (fakebase.DictStateFake); below, lookups into the state."""

    # ---- lookups (call with the lock held) -----------------------------------------------
    def client(self, cid):
        return next((c for c in self.state["clients"] if c["id"] == cid), None)

    def site(self, sid):
        for c in self.state["clients"]:
            for s in c.get("sites", []):
                if s["id"] == sid:
                    return s, c
        return None, None

    def find_agent(self, agent_id):
        return next((a for a in self.state["agents"] if a["agent_id"] == agent_id), None)

    def find_script(self, sid):
        return next((s for s in self.state["scripts"] if s["id"] == sid), None)


def list_row(fake, a):
    site, client = fake.site(a["site"])
    row = {k: a.get(k) for k in (
        "agent_id", "hostname", "monitoring_type", "description", "needs_reboot", "status",
        "last_seen", "boot_time", "checks", "maintenance_mode", "logged_username", "plat",
        "goarch", "operating_system", "version", "public_ip", "local_ips", "custom_fields")}
    row.update({"site_name": site["name"] if site else None,
                "client_name": client["name"] if client else None,
                "alert_template": None, "has_patches_pending": False, "pending_actions_count": 0,
                "overdue_text_alert": False, "overdue_email_alert": False,
                "overdue_dashboard_alert": False, "italic": False, "policy": None,
                "block_policy_inheritance": False})
    return row


def detail(fake, a):
    site, client = fake.site(a["site"])
    out = copy.deepcopy(a)
    out.update({"client": client["name"] if client else None,
                "site_name": site["name"] if site else None, "winupdatepolicy": [],
                "applied_policies": {}, "alert_template": None, "timezone": "UTC"})
    return out


def script_row(s, with_body=False):
    out = {k: v for k, v in s.items() if k not in ("script_body", "script_hash")}
    if with_body:
        out["script_body"] = s["script_body"]
        out["script_hash"] = s["script_hash"]
    return out


class Handler(fakebase.FakeHandler):
    server_version = "nginx"
    sys_version = ""
    control_routes = {**fakebase.FakeHandler.control_routes,
                      ("POST", "/_fake/latency"): "control_latency"}

    def do_PATCH(self):
        self.handle_any("PATCH")

    def html_404(self):
        self.send(404, raw=b"<h1>Not Found</h1><p>The requested resource was not found on this "
                  b"server.</p>", content_type="text/html")

    def request_record(self, method, url, raw):
        record = super().request_record(method, url, raw)
        record["params"] = {k: v[-1] for k, v in parse_qs(url.query).items()}
        return record

    def send_injection(self, injection):
        # A string body with a 5xx is an HTML error page (a proxy's), anything else JSON.
        if isinstance(injection["body"], str) and injection["status"] >= 500:
            return self.send(injection["status"], raw=injection["body"].encode(),
                             headers=injection["headers"], content_type="text/html")
        return super().send_injection(injection)

    # ---- the vendor ----------------------------------------------------------------------
    def vendor(self, method, url, raw):
        fake = self.fake
        body = fakebase.parse_json(raw)[1]
        path = url.path
        # Django resolves the URL before any authentication: a path without its trailing slash is
        # not a route (the real server redirects or answers 404; the fake always answers 404).
        if not path.endswith("/"):
            return self.html_404()
        parts = [p for p in path.split("/") if p]
        route = self.route(method, parts)
        if route is None:
            return self.html_404()
        if route == "method":
            return self.send(405, {"detail": 'Method "%s" not allowed.' % method})

        key = self.headers.get("X-API-KEY")
        with fake.lock:
            user = fake.state["keys"].get(key) if key else None
        challenge = {"WWW-Authenticate": "Token"}
        if not key:
            return self.send(401, {"detail": NO_CREDENTIALS}, challenge)
        if user is None:
            return self.send(401, {"detail": INVALID_TOKEN}, challenge)
        if user.get("expired"):
            return self.send(401, {"detail": EXPIRED}, challenge)
        if user.get("inactive"):
            return self.send(401, {"detail": INACTIVE}, challenge)
        if method != "GET" and user.get("read_only"):
            return self.send(403, {"detail": NO_PERMISSION})
        if raw and body is None and method != "GET":
            return self.send(400, {"detail": "JSON parse error - Expecting value"})
        return getattr(self, route)(parts, parse_qs(url.query), body or {})

    @staticmethod
    def route(method, parts):
        table = [
            (("agents",), {"GET": "get_agents"}),
            (("agents", None), {"GET": "get_agent", "DELETE": "delete_agent"}),
            (("agents", None, "cmd"), {"POST": "post_cmd"}),
            (("agents", None, "runscript"), {"POST": "post_runscript"}),
            (("agents", None, "ping"), {"GET": "get_ping"}),
            (("agents", None, "reboot"), {"POST": "post_reboot"}),
            (("scripts",), {"GET": "get_scripts"}),
            (("scripts", None), {"GET": "get_script"}),
            (("clients",), {"GET": "get_clients"}),
        ]
        for pattern, methods in table:
            if len(pattern) == len(parts) and all(p is None or p == q
                                                  for p, q in zip(pattern, parts)):
                return methods.get(method, "method")
        return None

    def get_agents(self, parts, query, body):
        fake = self.fake
        mon = query.get("monitoring_type", [None])[-1]
        if mon and mon not in ("server", "workstation"):
            return self.send(400, "monitoring type does not exist")
        with fake.lock:
            agents = list(fake.state["agents"])
            if "site" in query:
                agents = [a for a in agents if str(a["site"]) == query["site"][-1]]
            elif "client" in query:
                cid = query["client"][-1]
                agents = [a for a in agents
                          if (fake.site(a["site"])[1] or {}).get("id") is not None
                          and str(fake.site(a["site"])[1]["id"]) == cid]
            if mon:
                agents = [a for a in agents if a["monitoring_type"] == mon]
            if query.get("detail", ["true"])[-1] == "false":
                rows = []
                for a in agents:
                    site, client = fake.site(a["site"])
                    rows.append({"id": fake.state["agents"].index(a) + 1,
                                 "hostname": a["hostname"], "agent_id": a["agent_id"],
                                 "client": client["name"] if client else None,
                                 "site": site["name"] if site else None})
            else:
                rows = [list_row(fake, a) for a in agents]
        return self.send(200, rows)

    def get_agent(self, parts, query, body):
        with self.fake.lock:
            a = self.fake.find_agent(parts[1])
            out = detail(self.fake, a) if a else None
        if out is None:
            return self.send(404, {"detail": NOT_FOUND})
        return self.send(200, out)

    def delete_agent(self, parts, query, body):
        with self.fake.lock:
            a = self.fake.find_agent(parts[1])
            if a:
                self.fake.state["agents"].remove(a)
        if a is None:
            return self.send(404, {"detail": NOT_FOUND})
        return self.send(200, "%s will now be uninstalled." % a["hostname"])

    def get_ping(self, parts, query, body):
        with self.fake.lock:
            a = self.fake.find_agent(parts[1])
        if a is None:
            return self.send(404, {"detail": NOT_FOUND})
        return self.send(200, {"name": a["hostname"],
                               "status": "online" if a["status"] == "online" else "offline"})

    def post_reboot(self, parts, query, body):
        with self.fake.lock:
            a = self.fake.find_agent(parts[1])
        if a is None:
            return self.send(404, {"detail": NOT_FOUND})
        if a["status"] != "online":
            return self.send(400, OFFLINE)
        return self.send(200, "ok")

    def offline_wait(self, timeout):
        with self.fake.lock:
            cap = float(self.fake.state.get("offline_wait_cap_s", 0.2))
        time.sleep(max(0.0, min(float(timeout) + 2.0, cap)))

    def post_cmd(self, parts, query, body):
        with self.fake.lock:
            a = self.fake.find_agent(parts[1])
            a = copy.deepcopy(a)
        if a is None:
            return self.send(404, {"detail": NOT_FOUND})
        # The real view reads these keys without a serializer: a missing one is a server error.
        if not isinstance(body, dict) or any(k not in body for k in
                                             ("shell", "cmd", "timeout", "run_as_user")):
            return self.send(500, raw=b"<h1>Server Error (500)</h1>", content_type="text/html")
        try:
            timeout = int(body["timeout"])
        except (TypeError, ValueError):
            return self.send(500, raw=b"<h1>Server Error (500)</h1>", content_type="text/html")
        shell = body["shell"]
        if shell == "custom" and body.get("custom_shell"):
            shell = body["custom_shell"]
        elif shell not in SHELLS:
            return self.send(400, {"shell": ['"%s" is not a valid choice.' % shell]})
        if a["status"] != "online":
            self.offline_wait(timeout)
            return self.send(400, OFFLINE)
        # Deterministic output, so tests can assert on it.
        return self.send(200, "[%s@%s] %s\n" % (shell, a["hostname"], body["cmd"]))

    def post_runscript(self, parts, query, body):
        with self.fake.lock:
            a = copy.deepcopy(self.fake.find_agent(parts[1]))
        if a is None:
            return self.send(404, {"detail": NOT_FOUND})
        errors = {}
        if not isinstance(body, dict):
            body = {}
        if "script" not in body:
            errors["script"] = ["This field is required."]
        if body.get("output") not in SCRIPT_OUTPUTS:
            errors["output"] = ['"%s" is not a valid choice.' % body.get("output")]
        for list_field in ("args", "env_vars"):
            if list_field in body and not isinstance(body[list_field], list):
                errors[list_field] = ['Expected a list of items but got type "%s".'
                                      % type(body[list_field]).__name__]
        if errors:
            return self.send(400, errors)
        try:
            sid = int(body["script"])
        except (TypeError, ValueError):
            return self.send(400, {"script": ["A valid integer is required."]})
        with self.fake.lock:
            s = copy.deepcopy(self.fake.find_script(sid))
            offline_shape = self.fake.state.get("runscript_offline", "timeout200")
        if s is None:
            return self.send(404, {"detail": NOT_FOUND})
        timeout = int(body.get("timeout", s["default_timeout"]))
        output = body["output"]
        if output in ("forget", "email"):
            return self.send(200, "%s will now be run on %s" % (s["name"], a["hostname"]))
        if a["status"] != "online":
            self.offline_wait(timeout)
            if offline_shape == "unable400":
                return self.send(400, OFFLINE)
            return self.send(200, "timeout")
        text = "%s on %s args=%s env=%s\n" % (s["name"], a["hostname"],
                                              json.dumps(body.get("args", [])),
                                              json.dumps(body.get("env_vars", [])))
        if body.get("run_on_server"):
            return self.send(200, {"stdout": text, "stderr": "", "execution_time": 0.01,
                                   "retcode": 0})
        return self.send(200, text)

    def get_scripts(self, parts, query, body):
        with self.fake.lock:
            rows = [script_row(s) for s in self.fake.state["scripts"]]
        return self.send(200, rows)

    def get_script(self, parts, query, body):
        try:
            sid = int(parts[1])
        except ValueError:
            return self.html_404()
        with self.fake.lock:
            s = self.fake.find_script(sid)
            out = script_row(s, with_body=True) if s else None
        if out is None:
            return self.send(404, {"detail": NOT_FOUND})
        return self.send(200, out)

    def get_clients(self, parts, query, body):
        with self.fake.lock:
            out = []
            for c in self.fake.state["clients"]:
                client = copy.deepcopy(c)
                client.setdefault("server_policy", None)
                client.setdefault("workstation_policy", None)
                client.setdefault("alert_template", None)
                client.setdefault("block_policy_inheritance", False)
                client["agent_count"] = 0
                for s in client.get("sites", []):
                    s["client"] = c["id"]
                    s["client_name"] = c["name"]
                    s["agent_count"] = sum(1 for a in self.fake.state["agents"]
                                           if a["site"] == s["id"])
                    client["agent_count"] += s["agent_count"]
                out.append(client)
        return self.send(200, out)


def main(argv=None):
    parser = fakebase.make_parser(__doc__.split("\n")[0])
    parser.add_argument("--api-key", action="append",
                        help="an accepted API key (repeatable; default %s)" % DEFAULT_KEY)
    parser.add_argument("--state", help="JSON file whose top-level members replace the default "
                        "state (keys, clients, agents, scripts, offline settings)")
    parser.add_argument("--latency-ms", type=int, default=0, help="delay every vendor answer")
    args = parser.parse_args(argv)
    fakebase.check_args(parser, args)
    state = default_state(args.api_key or [DEFAULT_KEY])
    if args.state:
        state.update(fakebase.load_json_file(args.state))
    return fakebase.serve(Fake(state, latency_ms=args.latency_ms), Handler, args)


if __name__ == "__main__":
    sys.exit(main())
