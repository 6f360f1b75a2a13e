"""What the vendor fakes' self-tests (tests/fakes/<vendor>/test_fake_<vendor>.py) share: a throwaway
localhost certificate, the fake started as a child process (its "READY <port>" line read), an
HTTPS client that trusts the certificate, and a unittest base class that runs one fake for the
whole class. Python 3 standard library only."""

import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import unittest
import urllib.parse
from collections import namedtuple

# status (int), headers (http.client.HTTPMessage: .get() ignores case), text (str)
Answer = namedtuple("Answer", "status headers text")


def make_certificate(directory):
    """A self-signed certificate for localhost and 127.0.0.1 (its own CA): (cert, key) paths."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    return cert, key


class FakeProcess:
    """One fake: `python3 <script> --cert CERT --key KEY <args>`, listening once it printed
    "READY <port>"; stop() ends it."""

    def __init__(self, script, cert, key, *args):
        self.stderr = tempfile.TemporaryFile(mode="w+")  # a file: a chatty fake never blocks
        self.proc = subprocess.Popen([sys.executable, script, "--cert", cert, "--key", key, *args],
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            self.proc.kill()
            self.proc.wait(10)
            self.stderr.seek(0)
            message = "the fake did not print READY: %r\n%s" % (line, self.stderr.read())
            self.proc.stdout.close()
            self.stderr.close()
            raise RuntimeError(message)
        self.port = int(line.split()[1])
        self.context = ssl.create_default_context(cafile=cert)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.proc.stdout.close()
        self.stderr.close()

    def request(self, method, path, body=None, headers=None, form=None, timeout=20):
        """One HTTPS request to the fake (a new connection). body: bytes are sent as they are,
        anything else as JSON; form: a dict sent url-encoded. Returns an Answer."""
        headers = dict(headers or {})
        headers.setdefault("Connection", "close")  # one request a connection, as urllib does
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPSConnection("localhost", self.port, context=self.context,
                                           timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return Answer(response.status, response.msg, response.read().decode())
        finally:
            conn.close()


class FakeTestCase(unittest.TestCase):
    """Runs one fake for the whole class: self.fake (a FakeProcess of `script` with `args`),
    started with a fresh certificate (self.cert, self.key in self.dir). start_fake() starts
    another with other arguments (stop it yourself)."""

    script = None  # the fake's path
    args = ()  # its flags beyond --cert and --key
    process_class = FakeProcess

    @classmethod
    def setUpClass(cls):
        if shutil.which("openssl") is None:
            raise unittest.SkipTest("openssl is needed to make a test certificate")
        cls.dir = tempfile.mkdtemp(prefix="fake-test-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, ignore_errors=True)
        cls.cert, cls.key = make_certificate(cls.dir)
        cls.fake = cls.start_fake(*cls.args)
        cls.addClassCleanup(cls.fake.stop)

    @classmethod
    def start_fake(cls, *args):
        return cls.process_class(cls.script, cls.cert, cls.key, *args)
