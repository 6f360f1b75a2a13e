#!/usr/bin/env python3
"""A faithful fake of the Kasm Workspaces developer API (shared contract VENDOR_APIS.md, section 1).

HTTPS on loopback (Python standard library only). Prints one line "READY <port>" on stdout once
it listens. Vendor behaviour follows the contract: RPC-style "POST /api/public/<method>" with a
JSON body; credentials in the body (api_key, api_key_secret), in the api-key / api-key-secret
headers, or as "Authorization: Basic base64(key:secret)" (each style can be switched off); wrong
pair -> 403 "Access Denied", expired key -> 401 "Access has expired", a key without the needed
permission -> 401 "Unauthorized" (both codes configurable, the contract notes 1.19 saw 403);
unknown ids -> 400 "Invalid user_id (<id>)" / "Invalid kasm_id (<id>)"; business failures as
HTTP 200 + error_message; new sessions go "starting" -> "running" after a delay and a number of
status polls; ids compared hyphen-insensitively; whole lists, never paged. Test control lives
under /_fake/ (no auth); see README.md.
"""

import argparse
import base64
import copy
import json
import secrets as random_source
import ssl
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

DEFAULT_KEY = "kasm-test-key"
DEFAULT_SECRET = "kasm-test-secret-0123456789"

ACCESS_DENIED = "Access Denied"
EXPIRED = "Access has expired"
UNAUTHORIZED = "Unauthorized"
NO_DEFAULT_IMAGE = "No Default Image Found"
NO_RESOURCES = ("No resources are available to create the requested Kasm. Please try again "
                "later or contact an Administrator")
STARTING = "This session is currently starting."

# Methods that change something: a "read_only" key is refused on them.
WRITE_METHODS = {"request_kasm", "destroy_kasm", "create_user", "update_user", "delete_user",
                 "exec_command_kasm", "pause_kasm", "resume_kasm", "keepalive", "join_kasm",
                 "get_login", "add_user_group", "remove_user_group"}
TERMINAL = ("stopped", "deleting", "destroying", "delete_pending", "user_delete_pending",
            "admin_delete_pending")


def norm(value):
    """An id compared as Kasm does in practice: lower case, hyphens ignored."""
    return str(value or "").replace("-", "").lower()


def new_id():
    return random_source.token_hex(16)


def kasm_time(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def default_state(keys):
    """A Kasm server with two images, one pre-existing user, no sessions."""
    return {
        # api_key -> {"secret", "expired", "read_only", "denied": [methods without permission]}
        "keys": {k: {"secret": s, "expired": False, "read_only": False, "denied": []}
                 for k, s in keys},
        # Which credential carriers are read: "body", "headers" (api-key/api-key-secret), "basic".
        "auth_styles": ["body", "headers", "basic"],
        "wrong_key_status": 403,
        "no_permission_status": 401,
        "images": [
            {"image_id": "0b7a4e8f9c3d4f2a8e6b1d5c7a9f3e21", "name": "kasmweb/chrome:1.16.0",
             "friendly_name": "Chrome", "enabled": True, "available": True, "cores": 2,
             "memory": 2768000000},
            {"image_id": "4c1d2e3f4a5b4c6d8e7f9a0b1c2d3e4f", "name": "kasmweb/ubuntu-jammy:1.16.0",
             "friendly_name": "Ubuntu Jammy", "enabled": True, "available": True, "cores": 2,
             "memory": 4096000000},
        ],
        # image_id used when request_kasm names none or an unknown one; null: "No Default Image".
        "default_image_id": None,
        "users": {
            "5a0c3f1e7b2d4e6f8a9b0c1d2e3f4a5b": {
                "user_id": "5a0c3f1e7b2d4e6f8a9b0c1d2e3f4a5b", "username": "msp-shared@kasm.local",
                "first_name": "MSP", "last_name": "Shared", "organization": "", "phone": "",
                "realm": "local", "locked": False, "disabled": False,
                "groups": [{"name": "All Users", "group_id": "68d557ac4cac42cca9f31c7c853de0f3"}],
                "created": "2026-01-01 00:00:00.000000", "last_session": None},
        },
        "kasms": {},
        # A new session answers "starting" until both have passed.
        "provision_delay_s": 0.3,
        "provision_polls": 1,
        "session_hours": 4,
        # Business failures (HTTP 200 + error_message).
        "no_resources": False,
        # destroy_kasm calls seen: [{"kasm_id", "user_id", "time"}].
        "destroyed": [],
        "deleted_users": [],
    }


class Fake:
    """The fake's state, its recorded requests and its pending fault injections."""

    def __init__(self, state, latency_ms=0):
        self.lock = threading.Lock()
        self.initial = copy.deepcopy(state)
        self.state = copy.deepcopy(state)
        self.requests = []
        self.injections = []
        self.latency_ms = latency_ms

    def reset(self):
        with self.lock:
            self.state = copy.deepcopy(self.initial)
            self.requests = []
            self.injections = []

    def update_state(self, update):
        with self.lock:
            for key, value in update.items():
                self.state[key] = value

    def inject(self, spec):
        entry = {
            "status": spec.get("status"), "body": spec.get("body"),
            "headers": spec.get("headers") or {}, "latency_ms": int(spec.get("latency_ms", 0)),
            "skip": int(spec.get("skip", 0)), "times": int(spec.get("times", 1)),
            "method": spec.get("method"),  # the Kasm method name, e.g. "request_kasm"
            "html": bool(spec.get("html", False)),
        }
        with self.lock:
            self.injections.append(entry)

    def take_injection(self, method):
        with self.lock:
            for entry in self.injections:
                if entry["method"] and entry["method"] != method:
                    continue
                if entry["skip"] > 0:
                    entry["skip"] -= 1
                    continue
                if entry["times"] > 0:
                    entry["times"] -= 1
                    if entry["times"] == 0:
                        self.injections.remove(entry)
                return copy.deepcopy(entry)
        return None

    def record(self, entry):
        with self.lock:
            self.requests.append(entry)

    # ---- lookups (lock held) ---------------------------------------------------------------
    def user(self, uid):
        return self.state["users"].get(norm(uid))

    def user_by_name(self, name):
        return next((u for u in self.state["users"].values() if u["username"] == name), None)

    def kasm(self, kid):
        return self.state["kasms"].get(norm(kid))

    def image(self, iid):
        if not iid:
            return None
        return next((i for i in self.state["images"] if norm(i["image_id"]) == norm(iid)), None)


def kasm_row(k):
    return {key: k[key] for key in (
        "kasm_id", "user_id", "username", "image_id", "operational_status", "start_date",
        "keepalive_date", "expiration_date", "hostname", "server_id", "share_id",
        "container_ip", "port")}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""
    fake = None  # set by serve()

    def log_message(self, fmt, *args):
        pass

    def send(self, status, body=None, raw=None, content_type="application/json", headers=None):
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, message):
        return self.send(status, {"error_message": message})

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def handle_any(self, method):
        url = urlsplit(self.path)
        raw = self.read_body()
        if url.path.startswith("/_fake/"):
            return self.control(method, url.path, url.query, raw)
        fake = self.fake
        text = raw.decode("utf-8", "replace")
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        parts = [p for p in url.path.split("/") if p]
        kasm_method = parts[2] if len(parts) == 3 and parts[:2] in (["api", "public"],
                                                                   ["api", "admin"]) else None
        fake.record({"method": method, "path": url.path, "query": url.query,
                     "kasm_method": kasm_method,
                     "headers": {k: v for k, v in self.headers.items()},
                     "body": text, "json": parsed, "time": time.time()})
        latency = fake.latency_ms
        injection = fake.take_injection(kasm_method)
        if injection:
            latency += injection["latency_ms"]
        if latency:
            time.sleep(latency / 1000.0)
        if injection and injection["status"]:
            if injection["html"]:
                return self.send(injection["status"], raw=(injection["body"] or
                                 "<html><body><h1>500 Internal Server Error</h1></body></html>")
                                 .encode(), content_type="text/html",
                                 headers=injection["headers"])
            body = injection["body"]
            if body is None:
                body = {"error_message": "injected %d" % injection["status"]}
            return self.send(injection["status"], body, headers=injection["headers"])
        if kasm_method is None:
            return self.send(404, raw=b"<html><body>404 Not Found</body></html>",
                             content_type="text/html")
        if method != "POST":
            return self.send(405, raw=b"<html><body>405 Method Not Allowed</body></html>",
                             content_type="text/html")
        handler = getattr(self, "m_" + kasm_method, None)
        if handler is None:
            return self.send(404, raw=b"<html><body>404 Not Found</body></html>",
                             content_type="text/html")
        if raw and parsed is None:
            return self.send(500, raw=b"<html><body>500 Internal Server Error</body></html>",
                             content_type="text/html")
        body = parsed if isinstance(parsed, dict) else {}
        refusal = self.authenticate(kasm_method, body)
        if refusal:
            return self.error(*refusal)
        return handler(body)

    def credentials(self, body):
        """(key, secret) from the first enabled carrier that has them."""
        with self.fake.lock:
            styles = list(self.fake.state["auth_styles"])
        if "body" in styles and ("api_key" in body or "api_key_secret" in body):
            return body.get("api_key"), body.get("api_key_secret")
        auth = self.headers.get("Authorization") or ""
        if "basic" in styles and auth[:6].lower() == "basic ":
            try:
                key, _, secret = base64.b64decode(auth[6:].strip(), validate=True).decode(
                    "utf-8").partition(":")
                return key, secret
            except (ValueError, UnicodeDecodeError):
                return None, None
        if "headers" in styles and self.headers.get("api-key") is not None:
            return self.headers.get("api-key"), self.headers.get("api-key-secret")
        return None, None

    def authenticate(self, method, body):
        key, secret = self.credentials(body)
        with self.fake.lock:
            state = self.fake.state
            entry = state["keys"].get(key) if isinstance(key, str) else None
            if entry is None or not isinstance(secret, str) or secret != entry["secret"]:
                return int(state["wrong_key_status"]), ACCESS_DENIED
            if entry.get("expired"):
                return 401, EXPIRED
            if method in entry.get("denied", []) or (entry.get("read_only") and
                                                     method in WRITE_METHODS):
                return int(state["no_permission_status"]), UNAUTHORIZED
        return None

    # ---- provisioning model ----------------------------------------------------------------
    def advance(self, k):
        """Moves a starting session to running once its delay and polls have passed (lock held)."""
        if k["operational_status"] != "starting":
            return
        state = self.fake.state
        if (time.time() - k["_created"] >= float(state["provision_delay_s"])
                and k["_polls"] >= int(state["provision_polls"])):
            k["operational_status"] = "running"

    # ---- methods ---------------------------------------------------------------------------
    def m_request_kasm(self, body):
        with self.fake.lock:
            state = self.fake.state
            uid = body.get("user_id")
            if uid:
                user = self.fake.user(uid)
                if user is None:
                    return self.error(400, "Invalid user_id (%s)" % uid)
            else:
                user = self.make_user("anon-%s" % random_source.token_hex(4), {})
            image = self.fake.image(body.get("image_id")) or self.fake.image(
                state.get("default_image_id"))
            if image is None:
                return self.error(200, NO_DEFAULT_IMAGE)
            if state.get("no_resources"):
                return self.error(200, NO_RESOURCES)
            kid, token = new_id(), random_source.token_hex(16)
            now = time.time()
            env = body.get("environment")
            k = {"kasm_id": kid, "user_id": user["user_id"], "username": user["username"],
                 "image_id": image["image_id"], "operational_status": "starting",
                 "start_date": kasm_time(now), "keepalive_date": kasm_time(now),
                 "expiration_date": kasm_time(now + 3600 * float(state["session_hours"])),
                 "hostname": "kasm-agent-1", "server_id": "9f8e7d6c5b4a49382716f5e4d3c2b1a0",
                 "share_id": None, "container_ip": "172.18.0.%d" % (len(state["kasms"]) + 2),
                 "port": 443, "session_token": token,
                 "environment": env if isinstance(env, dict) else {},
                 "_created": now, "_polls": 0}
            state["kasms"][kid] = k
        return self.send(200, {"kasm_id": kid, "user_id": k["user_id"], "username": k["username"],
                               "status": "starting", "share_id": None, "session_token": token,
                               "kasm_url": "/#/connect/kasm/%s/%s/%s" % (kid, k["user_id"],
                                                                         token)})

    def m_get_kasm_status(self, body):
        with self.fake.lock:
            k = self.fake.kasm(body.get("kasm_id"))
            if k is None or norm(k["user_id"]) != norm(body.get("user_id")):
                if self.fake.user(body.get("user_id")) is None:
                    return self.error(400, "Invalid user_id (%s)" % body.get("user_id"))
                return self.error(400, "Invalid kasm_id (%s)" % body.get("kasm_id"))
            k["_polls"] += 1
            self.advance(k)
            now = kasm_time(time.time())
            if k["operational_status"] == "starting":
                progress = min(95, 20 * k["_polls"])
                return self.send(200, {"error_message": STARTING, "current_time": now,
                                       "operational_status": "starting",
                                       "operational_message": "Starting the session",
                                       "operational_progress": progress})
            image = self.fake.image(k["image_id"]) or {}
            out = kasm_row(k)
            out.update({"host": k["hostname"],
                        "image": {"image_id": image.get("image_id"), "name": image.get("name"),
                                  "friendly_name": image.get("friendly_name")},
                        "port_map": {"vnc": {"port": 443, "path": "vnc"}}})
        return self.send(200, {"current_time": now, "kasm": out})

    def destroy(self, k, by):
        state = self.fake.state
        state["kasms"].pop(norm(k["kasm_id"]), None)
        state["destroyed"].append({"kasm_id": k["kasm_id"], "user_id": k["user_id"],
                                   "time": time.time(), "by": by})

    def m_destroy_kasm(self, body):
        with self.fake.lock:
            k = self.fake.kasm(body.get("kasm_id"))
            if self.fake.user(body.get("user_id")) is None:
                return self.error(400, "Invalid user_id (%s)" % body.get("user_id"))
            if k is None or norm(k["user_id"]) != norm(body.get("user_id")):
                return self.error(400, "Invalid kasm_id (%s)" % body.get("kasm_id"))
            self.destroy(k, "destroy_kasm")
        return self.send(200, {})

    def m_get_kasms(self, body):
        with self.fake.lock:
            rows = []
            for k in self.fake.state["kasms"].values():
                self.advance(k)
                rows.append(kasm_row(k))
            return self.send(200, {"kasms": rows, "current_time": kasm_time(time.time())})

    def m_get_user_kasms(self, body):
        with self.fake.lock:
            if self.fake.user(body.get("user_id")) is None:
                return self.error(400, "Invalid user_id (%s)" % body.get("user_id"))
            rows = [kasm_row(k) for k in self.fake.state["kasms"].values()
                    if norm(k["user_id"]) == norm(body.get("user_id"))]
            return self.send(200, {"kasms": rows, "current_time": kasm_time(time.time())})

    def public_user(self, u):
        out = {k: v for k, v in u.items() if not k.startswith("_")}
        out["kasms"] = [kasm_row(k) for k in self.fake.state["kasms"].values()
                        if k["user_id"] == u["user_id"]]
        return out

    def m_get_users(self, body):
        with self.fake.lock:
            return self.send(200, {"users": [self.public_user(u)
                                             for u in self.fake.state["users"].values()]})

    def m_get_user(self, body):
        target = body.get("target_user") or {}
        with self.fake.lock:
            u = (self.fake.user(target.get("user_id")) if target.get("user_id")
                 else self.fake.user_by_name(target.get("username")))
            if u is None:
                return self.error(400, "Invalid user_id (%s)" % (target.get("user_id") or
                                                                  target.get("username")))
            return self.send(200, {"user": self.public_user(u)})

    def make_user(self, username, target):
        uid = new_id()
        u = {"user_id": uid, "username": username,
             "first_name": target.get("first_name", ""), "last_name": target.get("last_name", ""),
             "organization": target.get("organization", ""), "phone": target.get("phone", ""),
             "realm": "local", "locked": bool(target.get("locked", False)),
             "disabled": bool(target.get("disabled", False)),
             "groups": [{"name": "All Users", "group_id": "68d557ac4cac42cca9f31c7c853de0f3"}],
             "created": kasm_time(time.time()), "last_session": None,
             "_password_set": bool(target.get("password"))}
        self.fake.state["users"][uid] = u
        return u

    def m_create_user(self, body):
        target = body.get("target_user")
        if not isinstance(target, dict) or not target.get("username"):
            return self.error(400, "Invalid Request: target_user.username is required")
        with self.fake.lock:
            if self.fake.user_by_name(target["username"]) is not None:
                return self.error(200, "Username already exists")
            u = self.make_user(target["username"], target)
            return self.send(200, {"user": self.public_user(u)})

    def m_update_user(self, body):
        target = body.get("target_user") or {}
        with self.fake.lock:
            u = self.fake.user(target.get("user_id"))
            if u is None:
                return self.error(400, "Invalid user_id (%s)" % target.get("user_id"))
            for key in ("first_name", "last_name", "organization", "phone", "locked", "disabled"):
                if key in target:
                    u[key] = target[key]
            return self.send(200, {"user": self.public_user(u)})

    def m_delete_user(self, body):
        target = body.get("target_user") or {}
        with self.fake.lock:
            u = self.fake.user(target.get("user_id"))
            if u is None:
                return self.error(400, "Invalid user_id (%s)" % target.get("user_id"))
            mine = [k for k in self.fake.state["kasms"].values() if k["user_id"] == u["user_id"]]
            if mine and not body.get("force"):
                return self.error(200, "Unable to delete user. The user has active sessions. "
                                       "Use force to delete anyway.")
            for k in mine:
                self.destroy(k, "delete_user")
            del self.fake.state["users"][u["user_id"]]
            self.fake.state["deleted_users"].append({"user_id": u["user_id"],
                                                     "username": u["username"],
                                                     "time": time.time()})
        return self.send(200, {})

    def m_get_images(self, body):
        with self.fake.lock:
            return self.send(200, {"images": copy.deepcopy(self.fake.state["images"])})

    # ---- test control ----------------------------------------------------------------------
    def control(self, method, path, query, raw):
        fake = self.fake
        try:
            body = json.loads(raw.decode() or "{}")
        except ValueError:
            return self.send(400, {"error": "the body is not JSON"})
        if path == "/_fake/requests" and method == "GET":
            wanted = parse_qs(query).get("kasm_method", [None])[-1]
            with fake.lock:
                rows = [r for r in fake.requests if wanted is None or r["kasm_method"] == wanted]
                return self.send(200, {"requests": rows})
        if path == "/_fake/reset" and method == "POST":
            fake.reset()
            return self.send(200, {"ok": True})
        if path == "/_fake/inject" and method == "POST":
            for spec in (body if isinstance(body, list) else [body]):
                fake.inject(spec)
            return self.send(200, {"ok": True})
        if path == "/_fake/state" and method == "POST":
            if not isinstance(body, dict):
                return self.send(400, {"error": "the state must be an object"})
            fake.update_state(body)
            return self.send(200, {"ok": True})
        if path == "/_fake/state" and method == "GET":
            with fake.lock:
                return self.send(200, fake.state)
        if path == "/_fake/latency" and method == "POST":
            fake.latency_ms = int(body.get("latency_ms", 0))
            return self.send(200, {"ok": True})
        return self.send(404, {"error": "no such control endpoint"})


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def serve(args):
    pairs = []
    for item in args.api_key or ["%s:%s" % (DEFAULT_KEY, DEFAULT_SECRET)]:
        key, sep, secret = item.partition(":")
        if not sep:
            raise SystemExit("--api-key takes KEY:SECRET")
        pairs.append((key, secret))
    state = default_state(pairs)
    if args.state:
        with open(args.state, encoding="utf-8") as f:
            state.update(json.load(f))
    fake = Fake(state, latency_ms=args.latency_ms)
    handler = type("BoundHandler", (Handler,), {"fake": fake})
    server = Server((args.host, args.port), handler)
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True,
                                            do_handshake_on_connect=False)
    print("READY %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback)")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument("--cert", help="PEM certificate (omit for plain HTTP, debugging only)")
    parser.add_argument("--key", help="PEM private key of --cert")
    parser.add_argument("--api-key", action="append", metavar="KEY:SECRET",
                        help="an accepted API key and its secret (repeatable; default %s:%s)"
                        % (DEFAULT_KEY, DEFAULT_SECRET))
    parser.add_argument("--state", help="JSON file whose top-level members replace the default "
                        "state (keys, auth_styles, status codes, images, users, delays)")
    parser.add_argument("--latency-ms", type=int, default=0, help="delay every vendor answer")
    args = parser.parse_args(argv)
    if args.cert and not args.key:
        parser.error("--cert needs --key")
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
