"""A real HTTPS server on 127.0.0.1 publishing an OpenID discovery document
and a JWKS, for the key refresh worker's tests: a CA and a server
certificate made here (the cluster trusts the CA through
jwt_rls.jwks_ca_file), keys that can be rotated, and ways to misbehave
(slow, garbage, huge), or to go away."""

import datetime
import http.server
import ipaddress
import json
import os
import ssl
import tempfile
import threading
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _cert(subject, issuer_name, public_key, signing_key, ca, san=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


class JwksServer:
    """`mode`: "ok", "slow" (answers after `slow_seconds`), "garbage" (not
    JSON), "huge" (a 2 MiB body). `keys`: the JWKs published."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="jwt_rls_jwks_")
        os.chmod(self.dir, 0o755)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jwt_rls test CA")])
        ca = _cert(ca_name, ca_name, ca_key.public_key(), ca_key, True)
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = _cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), ca_name,
                     key.public_key(), ca_key, False, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        self.ca_file = os.path.join(self.dir, "ca.pem")
        with open(self.ca_file, "wb") as f:
            f.write(ca.public_bytes(serialization.Encoding.PEM))
        os.chmod(self.ca_file, 0o644)
        cert_file, key_file = os.path.join(self.dir, "cert.pem"), os.path.join(self.dir, "key.pem")
        with open(cert_file, "wb") as f:
            f.write(leaf.public_bytes(serialization.Encoding.PEM))
        with open(key_file, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        self.keys, self.mode, self.slow_seconds, self.requests = [], "ok", 10, 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests += 1
                if server.mode == "slow":
                    time.sleep(server.slow_seconds)
                if self.path == "/.well-known/openid-configuration":
                    body = json.dumps({"issuer": server.issuer, "jwks_uri": server.issuer + "/jwks.json"})
                elif self.path == "/jwks.json":
                    body = {"ok": json.dumps({"keys": server.keys}), "slow": json.dumps({"keys": server.keys}),
                            "garbage": "<html>not json</html>", "huge": " " * (2 << 20)}[server.mode]
                else:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass

        self.handler, self.port = Handler, 0
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_file, key_file)
        self.start()
        self.issuer = f"https://127.0.0.1:{self.port}"

    def start(self):
        """Listens (again, on the same port after `stop`)."""
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self.handler)
        self.httpd.socket = self.context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        """Stops listening: connections are refused, as from a dead server."""
        self.httpd.shutdown()
        self.httpd.server_close()
