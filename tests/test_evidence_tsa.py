"""RFC 3161 tokens on ledger checkpoints, against a local timestamp authority made with `openssl ts`."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from api.evidence.pack import PackRequest, build
from api.evidence.signing import keygen
from api.evidence.tsa import TimestampError, request_token
from api.evidence.verify import verify
from collector.db import migrate
from core.config import load_config
from kpi.job import backfill
from shopfloor.stages import schema_dirs
from tests import evidence_data as D
from tests.conftest import _make_db, drop_db

pytestmark = pytest.mark.integration
CNF = """[ tsa ]
default_tsa = tsa1
[ tsa1 ]
serial = {d}/serial
crypto_device = builtin
signer_digest = sha256
default_policy = 1.2.3.4.1
other_policies = 1.2.3.4.2
certs = {d}/tsa.crt
digests = sha256
accuracy = secs:1
ordering = yes
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
[ v3_tsa ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, timeStamping
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
"""


def _ssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d: Path, name: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "ts.cnf").write_text(CNF.format(d=d))
    (d / "serial").write_text("01\n")
    _ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-subj",
         f"/CN={name} root", "-days", "2", "-extensions", "v3_ca", "-config", "ts.cnf", cwd=d)
    _ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tsa.key", "-out", "tsa.csr", "-subj", f"/CN={name} TSA",
         "-config", "ts.cnf", cwd=d)
    _ssl("x509", "-req", "-in", "tsa.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "tsa.crt",
         "-days", "2", "-extfile", "ts.cnf", "-extensions", "v3_tsa", cwd=d)


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """An HTTP timestamp authority on loopback answering each query with `openssl ts -reply`."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl binary is needed for the local timestamp authority")
    d = tmp_path_factory.mktemp("tsa")
    make_ca(d / "ca", "Test")
    make_ca(d / "other", "Other")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            query = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                (d / "q.tsq").write_bytes(query)
                _ssl("ts", "-reply", "-queryfile", str(d / "q.tsq"), "-signer", "tsa.crt", "-inkey", "tsa.key",
                     "-config", "ts.cnf", "-out", str(d / "r.tsr"), cwd=d / "ca")
                body = (d / "r.tsr").read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", d / "ca" / "ca.crt", d / "other" / "ca.crt"
    finally:
        server.shutdown()
        server.server_close()


def test_pack_checkpoint_carries_a_token_that_verifies(tsa: tuple[str, Path, Path], tmp_path: Path) -> None:
    url_tsa, root, other_root = tsa
    url = _make_db("plain")
    try:
        migrate(url, log=lambda _: None, schema_dirs=schema_dirs())
        d0 = D.day0(4)
        D.load(url, 1, d0 - timedelta(days=1), d0 + timedelta(days=1), step_s=600)
        plant = D.write_plant(tmp_path, 1)
        backfill(url, load_config(plant), d0, d0 + timedelta(days=1))
        priv, pub = keygen(tmp_path / "k")
        build(PackRequest(plant, url, "cn-guangdong-proposed", "ev-plant", d0, d0 + timedelta(days=1), priv,
                          tmp_path / "p.zip", tsa_url=url_tsa))
    finally:
        drop_db(url)
    checks = {c.name: c for c in verify(tmp_path / "p.zip", pub, tsa_root=root)}
    assert checks["timestamps"].ok and checks["timestamps"].detail.startswith("1 RFC 3161 tokens verified")
    unchecked = {c.name: c for c in verify(tmp_path / "p.zip", pub)}
    assert unchecked["timestamps"].detail == "1 RFC 3161 tokens, not checked (give --tsa-root)"
    wrong = {c.name: c for c in verify(tmp_path / "p.zip", pub, tsa_root=other_root)}
    assert not wrong["timestamps"].ok and "does not verify" in wrong["timestamps"].problems[0]


def test_unreachable_tsa_is_one_clear_error() -> None:
    with pytest.raises(TimestampError, match=r"timestamp authority http://127.0.0.1:9/: .*check the URL"):
        request_token("http://127.0.0.1:9/", b"x", timeout_s=2)
