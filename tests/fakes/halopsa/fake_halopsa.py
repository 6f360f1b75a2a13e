#!/usr/bin/env python3
"""A faithful fake of HaloPSA's REST API over HTTPS, for tests (Python 3 standard library only).

It follows ../../../shared/contracts/VENDOR_APIS.md section 5a ("A faithful fake must") and the
general rules at the top of that file; README.md beside it documents the flags and the /_fake/
control endpoints. It binds 127.0.0.1 (port 0 by default) and prints `READY <port>` once
listening.
"""

import copy
import datetime
import json
import os
import secrets
import sys
import time
import urllib.parse

sys.dont_write_bytecode = True  # keep tests/fakes/common free of __pycache__
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import fakebase  # noqa: E402  (tests/fakes/common/fakebase.py)

KNOWN_SCOPES = {
    "all",
    "read:tickets",
    "edit:tickets",
    "read:customers",
    "edit:customers",
    "read:assets",
    "edit:assets",
    "read:crm",
    "edit:crm",
}
CLOSED_STATUS = 9
TICKET_FIELDS = (
    "summary",
    "details",
    "client_id",
    "site_id",
    "user_id",
    "tickettype_id",
    "priority_id",
    "status_id",
    "team_id",
    "agent_id",
    "customfields",
)
INT_FIELDS = ("client_id", "site_id", "user_id", "tickettype_id", "priority_id", "status_id",
              "team_id", "agent_id")


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def dotnet_error(message, class_name="HaloException"):
    return {"ClassName": class_name, "Message": message}


class FakeState(fakebase.FakeBase):
    """Everything the fake knows; one lock guards it all (fakebase.FakeBase: the lock, recorded
    requests, injections and latency). Injection rules keep their own fields and the counters
    "_skip" (from nth) and "_left" (count; a rule applies at least once)."""

    SKIP = "_skip"
    TIMES = "_left"
    ENDLESS_AT_ZERO = False

    def __init__(self, args):
        super().__init__(args.latency_ms)
        self.credentials = {}
        for spec in args.credential or []:
            parts = spec.split(":", 2)
            if len(parts) < 2:
                raise SystemExit("--credential takes ID:SECRET[:scope,scope]")
            scopes = parts[2].split(",") if len(parts) == 3 and parts[2] else None
            self.credentials[parts[0]] = {"secret": parts[1], "scopes": scopes}
        if args.client_id:
            self.credentials[args.client_id] = {"secret": args.client_secret, "scopes": None}
        self.tenants = set(args.tenant or [])
        self.hosted = bool(self.tenants)
        self.token_lifetime = args.token_lifetime
        self.default_limit = args.default_limit
        self.default_page_size = args.default_page_size
        self.max_page_size = args.max_page_size
        self.invalid_client_status = args.invalid_client_status
        self.tokens = {}
        self.tokens_issued = 0
        self.seq = 0
        self.seed = {"tickets": args.seed_tickets, "clients": args.seed_clients}
        self.initial_seed = dict(self.seed)
        self.tickets = {}
        self.clients = {}
        self.actions = {}
        self.next_ticket = 1
        self.next_client = 1
        self.next_action = 1
        self.reseed()

    # -- data ---------------------------------------------------------------------------------

    def reseed(self):
        clients = max(0, int(self.seed.get("clients", 0)))
        tickets = max(0, int(self.seed.get("tickets", 0)))
        if tickets and not clients:
            clients = 1
        self.clients = {}
        self.tickets = {}
        self.actions = {}
        for i in range(1, clients + 1):
            self.clients[i] = {
                "id": i,
                "name": "Client %d" % i,
                "inactive": i % 7 == 0,
                "website": "https://client%d.example" % i,
                "toplevel_id": 1,
            }
        base = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
        statuses = (1, 2, 3, CLOSED_STATUS)
        for i in range(1, tickets + 1):
            client = (i - 1) % clients + 1
            self.tickets[i] = {
                "id": i,
                "summary": "Ticket %d for client %d" % (i, client),
                "details": "<p>Details of ticket %d</p>" % i,
                "client_id": client,
                "client_name": self.clients[client]["name"],
                "site_id": client * 10,
                "site_name": "Main site of client %d" % client,
                "user_id": 100 + client,
                "status_id": statuses[i % len(statuses)],
                "tickettype_id": 1 + i % 3,
                "priority_id": 1 + i % 4,
                "agent_id": 1 + i % 3,
                "team": "Service Desk",
                "dateoccurred": (base + datetime.timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%S"),
            }
        self.next_ticket = tickets + 1
        self.next_client = clients + 1
        self.next_action = 1

    def reset_locked(self, options):
        """POST /_fake/reset: {"tokens": true} also revokes every token, {"state": true} also
        restores the seed data."""
        if options.get("tokens"):
            self.tokens = {}
        if options.get("state"):
            self.seed = dict(self.initial_seed)
            self.reseed()

    def update_state_locked(self, doc):
        """POST /_fake/state and --config: replace parts of the state."""
        if "credentials" in doc:
            self.credentials = {}
            for cid, value in doc["credentials"].items():
                if isinstance(value, str):
                    value = {"secret": value}
                self.credentials[cid] = {"secret": value["secret"], "scopes": value.get("scopes")}
        if "tenants" in doc:
            self.tenants = set(doc["tenants"])
            self.hosted = bool(self.tenants)
        if "hosted" in doc:
            self.hosted = bool(doc["hosted"])
        for key in ("token_lifetime", "default_limit", "default_page_size", "max_page_size",
                    "latency_ms", "invalid_client_status"):
            if key in doc:
                setattr(self, key, int(doc[key]))
        if "seed" in doc:
            self.seed = dict(doc["seed"])
            self.reseed()
        if "clients" in doc:
            self.clients = {int(c["id"]): dict(c) for c in doc["clients"]}
            self.next_client = max(self.clients, default=0) + 1
        if "tickets" in doc:
            self.tickets = {int(t["id"]): dict(t) for t in doc["tickets"]}
            self.next_ticket = max(self.tickets, default=0) + 1
        if doc.get("revoke_tokens"):
            self.tokens = {}
        if doc.get("expire_tokens"):
            for token in self.tokens.values():
                token["expires_at"] = 0

    def state_view_locked(self):
        """GET /_fake/state: a summary."""
        return {
            "hosted": self.hosted,
            "tenants": sorted(self.tenants),
            "token_lifetime": self.token_lifetime,
            "default_limit": self.default_limit,
            "tickets": len(self.tickets),
            "clients": len(self.clients),
            "actions": len(self.actions),
            "tokens_live": sum(1 for t in self.tokens.values() if t["expires_at"] > time.time()),
            "tokens_issued": self.tokens_issued,
            "requests": len(self.requests),
            "rules": copy.deepcopy(self.injections),
        }

    # -- injections -----------------------------------------------------------------------------

    def make_injection(self, spec):
        rule = dict(spec)
        rule["_skip"] = max(0, int(rule.get("nth", 1)) - 1)
        rule["_left"] = int(rule.get("count", 1))
        return rule

    def injection_applies(self, rule, method, path):
        prefix = rule.get("path")
        if prefix and not path.lower().startswith(prefix.lower()):
            return False
        return not (rule.get("method") and rule["method"].upper() != method)


class Handler(fakebase.FakeHandler):
    server_version = "FakeHaloPSA/1.0"
    handshake_timeout_s = 60
    quiet_errors = (Exception,)  # a client that went away or failed the TLS handshake

    @property
    def state(self):
        return self.fake

    # -- plumbing -------------------------------------------------------------------------------

    def send(self, status, body=None, headers=None, content_type="application/json"):
        if body is None:
            data = b""
        elif isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
        else:
            data = str(body).encode()
            content_type = "text/plain; charset=utf-8"
        self.send_data(status, data, content_type if data else None, headers)

    def request_record(self, method, url, raw):
        return {
            "method": method,
            "path": url.path,
            "query": {k: v for k, v in urllib.parse.parse_qsl(url.query, keep_blank_values=True)},
            "raw_query": url.query,
            "headers": {k: v for k, v in self.headers.items()},
            "body": raw.decode("utf-8", "replace"),
            "time": time.time(),
            "token_client_id": None,
            "status": None,
            "injected": False,
        }

    def admit(self, method, url, raw):
        self.recorded = record = self.request_record(method, url, raw)
        with self.state.lock:
            self.state.seq += 1
            record["seq"] = self.state.seq
            token = self.bearer()
            info = self.state.tokens.get(token) if token else None
            if info:
                record["token_client_id"] = info["client_id"]
            self.state.requests.append(record)
            return self.state.take_injection_locked(method, url.path)

    def answered(self):
        self.recorded["status"] = self.status_sent

    def vendor(self, method, url, raw):
        # .NET query binding is case-insensitive: keys are looked up in lower case.
        query = {}
        for key, value in urllib.parse.parse_qsl(url.query, keep_blank_values=True):
            query.setdefault(key.lower(), value)
        self.route(method, url.path, query, raw)

    def send_injection(self, rule):
        self.recorded["injected"] = True
        self.injected(rule)

    def injected(self, rule):
        status = int(rule["status"])
        headers = dict(rule.get("headers") or {})
        if "retry_after" in rule:
            headers["Retry-After"] = str(rule["retry_after"])
        body = rule.get("body")
        if body is None:
            if status == 429:
                body = {"message": "Too many requests, slow down"}
            elif status == 401:
                headers.setdefault("WWW-Authenticate", 'Bearer error="invalid_token"')
            elif status >= 500:
                body = "Service Unavailable"
        self.send(status, body, headers)

    def bearer(self):
        value = self.headers.get("Authorization") or ""
        if value[:7].lower() == "bearer ":
            return value[7:].strip()
        return None

    def json_body(self, body):
        try:
            return json.loads(body.decode("utf-8")), None
        except (ValueError, UnicodeDecodeError):
            return None, "The request body is not valid JSON"

    # -- /_fake/ (fakebase.FakeHandler answers GET requests, GET state and POST reset) ---------

    def control_body(self, raw):
        if not raw:
            return {}, None
        doc, error = self.json_body(raw)
        if error or not isinstance(doc, dict):
            return None, {"error": "body must be a JSON object"}
        return doc, None

    def control_inject(self, doc, url):
        with self.state.lock:
            if doc.get("clear"):
                self.state.injections = []
            for rule in doc.get("rules", [doc] if "status" in doc or "latency_ms" in doc else []):
                self.state.injections.append(self.state.make_injection(rule))
            return self.send(200, {"rules": len(self.state.injections)})

    def control_set_state(self, doc, url):
        with self.state.lock:
            try:
                self.state.update_state_locked(doc)
            except (KeyError, TypeError, ValueError) as e:
                return self.send(400, {"error": "bad state: %s" % e})
            return self.send(200, self.state.state_view_locked())

    # -- HaloPSA --------------------------------------------------------------------------------

    def route(self, method, path, query, body):
        lower = path.lower().rstrip("/")
        segments = [s for s in lower.split("/") if s]
        if segments == ["auth", "token"]:
            if method != "POST":
                return self.send(405, "Method Not Allowed")
            return self.token(query, body)
        if len(segments) < 2 or segments[0] != "api":
            return self.send(404, "Not Found")
        resource = segments[1]
        ident = segments[2] if len(segments) > 2 else None
        if len(segments) > 3:
            return self.send(404, "Not Found")
        handlers = {
            "tickets": ("tickets", self.tickets),
            "client": ("customers", self.clients),
            "actions": ("tickets", self.actions),
        }
        if resource not in handlers:
            return self.send(404, "Not Found")
        area, handler = handlers[resource]
        with self.state.lock:
            token = self.bearer()
            info = self.state.tokens.get(token) if token else None
            if info is None or info["expires_at"] <= time.time():
                return self.send(401, None, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
            needed = ("edit:" if method in ("POST", "PUT", "DELETE") else "read:") + area
            if "all" not in info["scopes"] and needed not in info["scopes"]:
                return self.send(403, {"Message": "The access token lacks the scope " + needed})
            if ident is not None and not ident.isdigit():
                return self.send(400, dotnet_error("The value '%s' is not valid." % ident,
                                                   "System.FormatException"))
            return handler(method, int(ident) if ident is not None else None, query, body)

    def token(self, query, body):
        st = self.state
        with st.lock:
            if st.hosted:
                tenant = query.get("tenant")
                if not tenant:
                    return self.send(400, {"error": "invalid_request",
                                           "error_description": "tenant is required"})
                if tenant not in st.tenants:
                    return self.send(400, {"error": "invalid_request",
                                           "error_description": "Unknown tenant"})
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype != "application/x-www-form-urlencoded":
                return self.send(400, {"error": "invalid_request",
                                       "error_description": "form-urlencoded body expected"})
            try:
                form = dict(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                                   strict_parsing=bool(body)))
            except (ValueError, UnicodeDecodeError):
                return self.send(400, {"error": "invalid_request"})
            if form.get("grant_type") != "client_credentials":
                return self.send(400, {"error": "unsupported_grant_type"})
            cid = form.get("client_id")
            secret = form.get("client_secret")
            if not cid or secret is None:
                return self.send(400, {"error": "invalid_request",
                                       "error_description": "client_id and client_secret required"})
            cred = st.credentials.get(cid)
            if cred is None or not secrets.compare_digest(cred["secret"].encode(), secret.encode()):
                return self.send(st.invalid_client_status, {"error": "invalid_client"})
            requested = (form.get("scope") or "all").split()
            allowed = cred.get("scopes")
            for scope in requested:
                if scope not in KNOWN_SCOPES or (allowed is not None and scope not in allowed
                                                 and "all" not in allowed):
                    return self.send(400, {"error": "invalid_scope"})
            token = secrets.token_urlsafe(32)
            st.tokens[token] = {
                "client_id": cid,
                "scopes": requested,
                "tenant": query.get("tenant"),
                "expires_at": time.time() + st.token_lifetime,
            }
            st.tokens_issued += 1
            return self.send(200, {"access_token": token, "token_type": "Bearer",
                                   "expires_in": st.token_lifetime, "scope": " ".join(requested)})

    def page(self, items, query, key):
        """Halo's paging: pageinate=true&page_size&page_no, else the default limit."""
        total = len(items)
        if query.get("pageinate", "").lower() == "true":
            try:
                size = int(query.get("page_size") or self.state.default_page_size)
                number = int(query.get("page_no") or 1)
            except ValueError:
                return 400, dotnet_error("page_size and page_no must be numbers",
                                         "System.FormatException")
            size = max(1, size)
            if self.state.max_page_size:
                size = min(size, self.state.max_page_size)
            number = max(1, number)
            start = (number - 1) * size
            return 200, {"page_no": number, "page_size": size, "record_count": total,
                         key: items[start:start + size]}
        return 200, {"record_count": total, key: items[:self.state.default_limit]}

    def tickets(self, method, ident, query, body):
        st = self.state
        if method == "GET" and ident is None:
            items = sorted(st.tickets.values(), key=lambda t: t["id"])
            for field in ("client_id", "site_id", "agent_id", "status_id", "user_id"):
                if field in query:
                    try:
                        wanted = int(query[field])
                    except ValueError:
                        return self.send(400, dotnet_error("%s must be a number" % field))
                    items = [t for t in items if t.get(field) == wanted]
            if query.get("open_only", "").lower() == "true":
                items = [t for t in items if t.get("status_id") != CLOSED_STATUS]
            if query.get("search"):
                needle = query["search"].lower()
                items = [t for t in items if needle in (t.get("summary") or "").lower()]
            details = query.get("includedetails", "").lower() == "true"
            items = [t if details else {k: v for k, v in t.items() if k != "details"}
                     for t in items]
            return self.send(*self.page(items, query, "tickets"))
        if method == "GET":
            ticket = st.tickets.get(ident)
            if ticket is None:
                return self.send(404, dotnet_error("Ticket %d not found" % ident))
            out = dict(ticket)
            if query.get("includedetails", "").lower() == "true":
                out["customfields"] = []
                out["actions_count"] = sum(1 for a in st.actions.values()
                                           if a["ticket_id"] == ident)
            return self.send(200, out)
        if method == "DELETE" and ident is not None:
            if st.tickets.pop(ident, None) is None:
                return self.send(404, dotnet_error("Ticket %d not found" % ident))
            return self.send(200, None)
        if method == "POST" and ident is None:
            return self.post_array(body, self.upsert_ticket)
        return self.send(405, "Method Not Allowed")

    def post_array(self, body, upsert):
        """Halo's POST rule: a JSON array; an element with id updates, without creates."""
        doc, error = self.json_body(body)
        if error:
            return self.send(400, error)
        if not isinstance(doc, list):
            return self.send(400, dotnet_error(
                "Cannot deserialize the current JSON object into type 'List`1' because the type "
                "requires a JSON array", "Newtonsoft.Json.JsonSerializationException"))
        if not doc:
            return self.send(400, dotnet_error("The request contains no records"))
        results = []
        created = True
        for element in doc:
            if not isinstance(element, dict):
                return self.send(400, dotnet_error("Each element must be an object"))
            status, result = upsert(element)
            if status >= 300:
                return self.send(status, result)
            created = created and status == 201
            results.append(result)
        return self.send(201 if created else 200, results[0] if len(results) == 1 else results)

    def upsert_ticket(self, element):
        st = self.state
        for field in INT_FIELDS:
            if field in element and element[field] is not None and (
                    not isinstance(element[field], int) or isinstance(element[field], bool)):
                return 400, dotnet_error("Error converting value for %s" % field,
                                         "Newtonsoft.Json.JsonReaderException")
        ident = element.get("id")
        if ident:
            ticket = st.tickets.get(ident)
            if ticket is None:
                return 404, dotnet_error("Ticket %s not found" % ident)
            for field in TICKET_FIELDS:
                if field in element:
                    ticket[field] = element[field]
            if "client_id" in element:
                client = st.clients.get(element["client_id"])
                if client is None:
                    return 400, {"Message": "Client %s does not exist" % element["client_id"]}
                ticket["client_name"] = client["name"]
            return 200, dict(ticket)
        if not isinstance(element.get("summary"), str) or not element["summary"].strip():
            return 400, {"Message": "A summary is required"}
        client = st.clients.get(element.get("client_id"))
        if client is None:
            return 400, dotnet_error("Client %s does not exist" % element.get("client_id"))
        ticket = {
            "id": st.next_ticket,
            "summary": element["summary"],
            "details": element.get("details", ""),
            "client_id": client["id"],
            "client_name": client["name"],
            "site_id": element.get("site_id", client["id"] * 10),
            "site_name": "Main site of client %d" % client["id"],
            "user_id": element.get("user_id"),
            "status_id": element.get("status_id", 1),
            "tickettype_id": element.get("tickettype_id", 1),
            "priority_id": element.get("priority_id", 4),
            "agent_id": element.get("agent_id"),
            "team": "Service Desk",
            "dateoccurred": now_iso(),
        }
        st.next_ticket += 1
        st.tickets[ticket["id"]] = ticket
        return 201, dict(ticket)

    def clients(self, method, ident, query, body):
        st = self.state
        if method == "GET" and ident is None:
            items = sorted(st.clients.values(), key=lambda c: c["id"])
            if query.get("includeinactive", "").lower() != "true":
                items = [c for c in items if not c.get("inactive")]
            if query.get("search"):
                needle = query["search"].lower()
                items = [c for c in items if needle in c["name"].lower()]
            return self.send(*self.page(items, query, "clients"))
        if method == "GET":
            client = st.clients.get(ident)
            if client is None:
                return self.send(404, dotnet_error("Client %d not found" % ident))
            return self.send(200, dict(client))
        if method == "POST" and ident is None:
            return self.post_array(body, self.upsert_client)
        return self.send(405, "Method Not Allowed")

    def upsert_client(self, element):
        st = self.state
        ident = element.get("id")
        if ident:
            client = st.clients.get(ident)
            if client is None:
                return 404, dotnet_error("Client %s not found" % ident)
            client.update({k: v for k, v in element.items() if k != "id"})
            return 200, dict(client)
        if not isinstance(element.get("name"), str) or not element["name"].strip():
            return 400, {"Message": "A name is required"}
        client = {"id": st.next_client, "name": element["name"],
                  "inactive": bool(element.get("inactive", False))}
        st.next_client += 1
        st.clients[client["id"]] = client
        return 201, dict(client)

    def actions(self, method, ident, query, body):
        st = self.state
        if method == "GET" and ident is None:
            items = sorted(st.actions.values(), key=lambda a: a["id"])
            if "ticket_id" in query:
                try:
                    wanted = int(query["ticket_id"])
                except ValueError:
                    return self.send(400, dotnet_error("ticket_id must be a number"))
                items = [a for a in items if a["ticket_id"] == wanted]
            return self.send(200, {"record_count": len(items), "actions": items})
        if method == "POST" and ident is None:
            return self.post_array(body, self.upsert_action)
        return self.send(405, "Method Not Allowed")

    def upsert_action(self, element):
        st = self.state
        ticket_id = element.get("ticket_id")
        if not isinstance(ticket_id, int) or ticket_id not in st.tickets:
            return 400, dotnet_error("Ticket %s not found" % ticket_id)
        if not element.get("note") and not element.get("outcome"):
            return 400, {"Message": "A note or an outcome is required"}
        action = {
            "id": st.next_action,
            "ticket_id": ticket_id,
            "note": element.get("note", ""),
            "outcome": element.get("outcome", "Note"),
            "hiddenfromuser": bool(element.get("hiddenfromuser", False)),
            "datetime": now_iso(),
            "who": "API",
        }
        st.next_action += 1
        st.actions[action["id"]] = action
        return 201, dict(action)


def parse_args(argv):
    p = fakebase.make_parser(__doc__.splitlines()[0], cert_required=True)
    p.add_argument("--client-id", default="helm-client", help="the API application's client id")
    p.add_argument("--client-secret", default="helm-secret", help="its client secret")
    p.add_argument("--credential", action="append",
                   help="another credential ID:SECRET[:scope,scope] (repeatable)")
    p.add_argument("--tenant", action="append",
                   help="hosted mode: a known tenant (repeatable); /auth/token then needs ?tenant=")
    p.add_argument("--token-lifetime", type=int, default=3600, help="expires_in of tokens (s)")
    p.add_argument("--default-limit", type=int, default=100,
                   help="records returned without pageinate=true")
    p.add_argument("--default-page-size", type=int, default=50,
                   help="page_size when pageinate=true and none is given")
    p.add_argument("--max-page-size", type=int, default=0, help="cap on page_size (0: none)")
    p.add_argument("--seed-tickets", type=int, default=0)
    p.add_argument("--seed-clients", type=int, default=0)
    p.add_argument("--latency-ms", type=int, default=0, help="added to every vendor request")
    p.add_argument("--invalid-client-status", type=int, default=400,
                   help="status of an invalid_client token answer (400 as IdentityServer, or 401)")
    p.add_argument("--config", help="JSON file applied like POST /_fake/state")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv if argv is not None else sys.argv[1:])
    state = FakeState(args)
    if args.config:
        state.update_state(fakebase.load_json_file(args.config))
        state.initial_seed = dict(state.seed)  # what POST /_fake/reset {"state": true} restores
    return fakebase.serve(state, Handler, args)


if __name__ == "__main__":
    sys.exit(main())
