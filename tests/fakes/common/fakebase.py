"""What the vendor fakes (tests/fakes/<vendor>/fake_<vendor>.py) share: Python 3 standard library
only.

- FakeBase: the fake's lock, its recorded requests, its pending fault injections (skip the first
  matches, then apply a number of times) and its latency; DictStateFake adds a JSON state that
  POST /_fake/state replaces member by member and POST /_fake/reset restores.
- FakeHandler: the HTTP plumbing (quiet log, send(), read_body(), do_GET/POST/PUT/DELETE into one
  handle_any()), the order a vendor request goes through (record it and take its injection,
  wait the latency, answer the injected fault or the vendor), and the /_fake/ control endpoints.
- make_parser() and serve(): --host/--port/--cert/--key, TLS, "READY <port>" on stdout.

A vendor file subclasses FakeBase (or DictStateFake) and FakeHandler and overrides the hooks
where it differs; README.md beside this file lists them.
"""

import argparse
import copy
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

CONTROL_PREFIX = "/_fake/"


def parse_json(raw):
    """(text, parsed) of a request body; parsed is None for an empty or malformed body."""
    text = raw.decode("utf-8", "replace")
    try:
        return text, (json.loads(text) if text else None)
    except ValueError:
        return text, None


# ---- state ------------------------------------------------------------------------------------

class FakeBase:
    """The fake's lock, recorded requests, pending injections and latency (one lock guards it all;
    it is not reentrant: the *_locked methods expect the caller to hold it)."""

    # The counters of an injection entry: skip the first `skip` matching requests, then apply to
    # `times` of them.
    SKIP = "skip"
    TIMES = "times"
    # True: an entry whose count is 0 (or less) applies forever; False: it applies once.
    ENDLESS_AT_ZERO = True

    def __init__(self, latency_ms=0):
        self.lock = threading.Lock()
        self.requests = []
        self.injections = []
        self.latency_ms = latency_ms

    # ---- hooks ------------------------------------------------------------------------------
    def reset_locked(self, options):
        """POST /_fake/reset beyond forgetting requests and injections (options: its body)."""

    def update_state_locked(self, doc):
        """POST /_fake/state: change the state (may raise KeyError, TypeError, ValueError)."""
        raise NotImplementedError

    def state_view_locked(self):
        """GET /_fake/state: what it answers."""
        raise NotImplementedError

    def make_injection(self, spec):
        """An injection entry from a POST /_fake/inject spec (with the SKIP and TIMES counters)."""
        return {
            "status": spec.get("status"), "body": spec.get("body"),
            "headers": spec.get("headers") or {}, "latency_ms": int(spec.get("latency_ms", 0)),
            "skip": int(spec.get("skip", 0)), "times": int(spec.get("times", 1)),
            "method": spec.get("method"), "path_prefix": spec.get("path_prefix"),
        }

    def injection_applies(self, entry, method, path):
        """Whether the entry matches this request (before skip and times are counted)."""
        if entry["method"] and entry["method"] != method:
            return False
        return not (entry["path_prefix"] and not path.startswith(entry["path_prefix"]))

    # ---- control ------------------------------------------------------------------------------
    def reset(self, options=None):
        with self.lock:
            self.requests = []
            self.injections = []
            self.reset_locked(options if options is not None else {})

    def update_state(self, doc):
        with self.lock:
            self.update_state_locked(doc)

    def inject(self, spec):
        entry = self.make_injection(spec)
        with self.lock:
            self.injections.append(entry)

    def take_injection_locked(self, method, path):
        """A copy of the injection that applies to this request, using one use of it up."""
        for entry in self.injections:
            if not self.injection_applies(entry, method, path):
                continue
            if entry[self.SKIP] > 0:
                entry[self.SKIP] -= 1
                continue
            if entry[self.TIMES] > 0 or not self.ENDLESS_AT_ZERO:
                entry[self.TIMES] -= 1
                if entry[self.TIMES] <= 0:
                    self.injections.remove(entry)
            return copy.deepcopy(entry)
        return None

    def take_injection(self, method, path):
        with self.lock:
            return self.take_injection_locked(method, path)

    def record(self, entry):
        with self.lock:
            self.requests.append(entry)


class DictStateFake(FakeBase):
    """A fake whose state is one JSON object: POST /_fake/state replaces its top-level members,
    GET /_fake/state answers it, POST /_fake/reset restores the initial one."""

    def __init__(self, state, latency_ms=0):
        super().__init__(latency_ms)
        self.initial = copy.deepcopy(state)
        self.state = copy.deepcopy(state)

    def reset_locked(self, options):
        self.state = copy.deepcopy(self.initial)

    def update_state_locked(self, doc):
        for key, value in doc.items():
            self.state[key] = value

    def state_view_locked(self):
        return self.state


# ---- HTTP ---------------------------------------------------------------------------------------

class FakeHandler(BaseHTTPRequestHandler):
    """One connection to the fake; self.fake is the FakeBase that serve() was given."""

    protocol_version = "HTTP/1.1"
    # Not None: set this socket timeout (seconds) and do the TLS handshake in setup(), in the
    # connection's own thread; None: no timeout, and the handshake happens on the first read.
    handshake_timeout_s = None
    # Exceptions of a connection that Server.handle_error keeps quiet about (a client that gave
    # up, timed out or failed the handshake is ordinary in fault tests); others are printed.
    quiet_errors = (ConnectionError, ssl.SSLError, TimeoutError)
    # The control endpoints: (method, path) -> the name of the method that answers it. A vendor
    # adds or removes entries ({**FakeHandler.control_routes, ...}).
    control_routes = {
        ("GET", "/_fake/requests"): "control_requests",
        ("POST", "/_fake/reset"): "control_reset",
        ("POST", "/_fake/inject"): "control_inject",
        ("POST", "/_fake/state"): "control_set_state",
        ("GET", "/_fake/state"): "control_get_state",
    }
    # Opt-in: ("POST", "/_fake/latency"): "control_latency".

    @property
    def fake(self):
        return self.server.fake

    def setup(self):
        if self.handshake_timeout_s is not None:
            self.request.settimeout(self.handshake_timeout_s)
            if isinstance(self.request, ssl.SSLSocket):
                self.request.do_handshake()
        super().setup()

    def log_message(self, fmt, *args):  # quiet: tests read /_fake/requests instead
        pass

    # ---- plumbing -----------------------------------------------------------------------------
    def send_data(self, status, data, content_type=None, headers=None):
        """The answer: status, Content-Type (when given), Content-Length, headers, data."""
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)
        self.status_sent = status

    def send(self, status, body=None, headers=None, raw=None, content_type="application/json"):
        """Body as JSON (a str too: a JSON string), or raw bytes as they are."""
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        self.send_data(status, data, content_type, headers)

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
        self.status_sent = 0
        url = urlsplit(self.path)
        raw = self.read_body()
        if url.path.startswith(CONTROL_PREFIX):
            return self.control(method, url, raw)
        injection = self.admit(method, url, raw)
        latency = self.fake.latency_ms
        if injection:
            latency += int(injection.get("latency_ms") or 0)
        if latency:
            time.sleep(latency / 1000.0)
        try:
            if injection and injection.get("status"):
                self.send_injection(injection)
            else:
                self.vendor(method, url, raw)
        finally:
            self.answered()

    # ---- hooks of a vendor request ------------------------------------------------------------
    def admit(self, method, url, raw):
        """Record the request and take the injection that applies to it (or None)."""
        self.fake.record(self.request_record(method, url, raw))
        return self.fake.take_injection(method, url.path)

    def request_record(self, method, url, raw):
        """What GET /_fake/requests shows of a vendor request."""
        text, parsed = parse_json(raw)
        return {"method": method, "path": url.path, "query": url.query,
                "headers": {k: v for k, v in self.headers.items()},
                "body": text, "json": parsed, "time": time.time()}

    def send_injection(self, injection):
        """Answer an injected fault (injection["status"] is set)."""
        body = injection.get("body")
        if body is None:
            body = {"detail": "injected %d" % injection["status"]}
        self.send(injection["status"], body, headers=injection.get("headers"))

    def vendor(self, method, url, raw):
        """Answer as the vendor would."""
        raise NotImplementedError

    def answered(self):
        """Called once the vendor request has been answered (or failed)."""

    # ---- /_fake/ ------------------------------------------------------------------------------
    def control_body(self, raw):
        """(parsed body, None), or (None, the error object of a 400)."""
        try:
            return json.loads(raw.decode() or "{}"), None
        except ValueError:
            return None, {"error": "the body is not JSON"}

    def control(self, method, url, raw):
        body, error = self.control_body(raw)
        if error is not None:
            return self.send(400, error)
        name = self.control_routes.get((method, url.path))
        if name is None:
            return self.send(404, {"error": "no such control endpoint"})
        return getattr(self, name)(body, url)

    def control_requests(self, body, url):
        with self.fake.lock:
            return self.send(200, {"requests": list(self.fake.requests)})

    def control_reset(self, body, url):
        self.fake.reset(body)
        return self.send(200, {"ok": True})

    def control_inject(self, body, url):
        for spec in (body if isinstance(body, list) else [body]):
            self.fake.inject(spec)
        return self.send(200, {"ok": True})

    def control_set_state(self, body, url):
        if not isinstance(body, dict):
            return self.send(400, {"error": "the state must be an object"})
        self.fake.update_state(body)
        return self.send(200, {"ok": True})

    def control_get_state(self, body, url):
        with self.fake.lock:
            return self.send(200, self.fake.state_view_locked())

    def control_latency(self, body, url):
        self.fake.latency_ms = int(body.get("latency_ms", 0))
        return self.send(200, {"ok": True})


class Server(ThreadingHTTPServer):
    """Thread per connection; with TLS each accepted socket is wrapped without a handshake, which
    then happens in the connection's own thread (a slow or broken client never holds up
    accept())."""

    daemon_threads = True
    allow_reuse_address = True
    fake = None
    tls = None

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.tls is None:
            return sock, addr
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], self.RequestHandlerClass.quiet_errors):
            return
        super().handle_error(request, client_address)


# ---- command line -------------------------------------------------------------------------------

def make_parser(description, cert_required=False):
    """An argument parser with the flags every fake has: --host, --port, --cert, --key."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback)")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    if cert_required:
        parser.add_argument("--cert", required=True, help="PEM certificate (chain) to serve")
        parser.add_argument("--key", required=True, help="PEM private key")
    else:
        parser.add_argument("--cert",
                            help="PEM certificate (omit for plain HTTP, debugging only)")
        parser.add_argument("--key", help="PEM private key of --cert")
    return parser


def check_args(parser, args):
    """The checks of the shared flags after parsing (--cert needs --key)."""
    if args.cert and not args.key:
        parser.error("--cert needs --key")


def serve(fake, handler, args):
    """Listen on args.host:args.port (TLS when args.cert), print "READY <port>", serve until
    interrupted. Returns the exit status."""
    server = Server((args.host, args.port), handler)
    server.fake = fake
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(args.cert, args.key)
        server.tls = context
    print("READY %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def load_json_file(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
