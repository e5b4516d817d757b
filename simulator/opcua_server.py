"""A simulated OPC UA PLC serving simulated machines on loopback (asyncua Server).

Address space: namespace "urn:shopfloor:sim" is registered first, so it is index 2 (0 is OPC UA, 1 is the
server's own). Under Objects there is one folder per machine, `ns=2;s=<machine_id>`, holding
`ns=2;s=<machine_id>.status` (Int32), `.parts_total` and `.parts_scrap` (UInt32; UInt64 for 64-bit counters),
`.energy_total` and `.power_kw` (Double; power_kw has an EURange property 0..20 for percent deadbands).
"""

from __future__ import annotations

import socket
import tempfile
from datetime import UTC, datetime
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole

from core.times import from_us, now_us
from simulator.machine import Machine

NAMESPACE_URI = "urn:shopfloor:sim"
NS = 2
APP_URI = "urn:shopfloor:sim:server"
TAGS = ("status", "parts_total", "parts_scrap", "energy_total", "power_kw")
SIM_USER, SIM_PASSWORD = "operator", "shopfloor-sim"


def node_id(machine_id: str, tag: str) -> str:
    """The node id string of a machine's tag, as used in plant files."""
    return f"ns={NS};s={machine_id}.{tag}"


def _server_certificate(cert_path: Path, key_path: Path, app_uri: str, host: str) -> None:
    """A self-signed OPC UA server certificate (DER) and key (PEM) for the simulated PLC."""
    from asyncua.crypto.cert_gen import (
        dump_private_key_as_pem,
        generate_private_key,
        generate_self_signed_app_certificate,
    )
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = generate_private_key()
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(app_uri), x509.DNSName(host),
                                     x509.DNSName("localhost"), x509.DNSName(socket.gethostname())]
    try:
        names.append(x509.IPAddress(ip_address(host)))
    except ValueError:
        pass
    cert = generate_self_signed_app_certificate(
        key, app_uri, {}, names, extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], days=365)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    key_path.write_bytes(dump_private_key_as_pem(key))


class _Users:
    """Username/password user manager for the secure simulator (anonymous is refused)."""

    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username, password

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username == self.username and password == self.password:
            return User(role=UserRole.User, name=username)
        return None


class OpcUaPlc:
    """One OPC UA server exposing several machines; `update()` publishes their current values."""

    def __init__(self, machines: list[Machine], host: str = "127.0.0.1", port: int = 4840,
                 security: bool = False, cert_dir: str | None = None,
                 username: str = SIM_USER, password: str = SIM_PASSWORD) -> None:
        self.machines = machines
        self.host, self.port = host, port
        self.security = security
        self.username, self.password = username, password
        self._cert_dir = cert_dir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.server: Server | None = None
        self._types: dict[str, ua.VariantType] = {}

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/shopfloor/"

    @property
    def cert_path(self) -> Path:
        """The server's certificate (DER), when security=True: copy it into a client's trust_dir."""
        return self._dir() / "server_cert.der"

    def _dir(self) -> Path:
        if self._cert_dir is None:
            self._tmp = self._tmp or tempfile.TemporaryDirectory(prefix="shopfloor-ua-")
            self._cert_dir = self._tmp.name
        return Path(self._cert_dir)

    async def start(self) -> None:
        """Build the address space and listen."""
        server = Server(user_manager=_Users(self.username, self.password) if self.security else None)
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("Shopfloor simulated PLC")
        await server.set_application_uri(APP_URI)
        if self.security:
            await self._secure(server)
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace(NAMESPACE_URI)
        assert idx == NS, f"namespace index {idx}, expected {NS}"
        objects = server.nodes.objects
        for m in self.machines:
            mid = m.spec.id
            folder = await objects.add_folder(ua.NodeId(mid, NS), ua.QualifiedName(mid, NS))
            counter = ua.VariantType.UInt32 if m.spec.counter_bits <= 32 else ua.VariantType.UInt64
            types = {"status": ua.VariantType.Int32, "parts_total": counter, "parts_scrap": counter,
                     "energy_total": ua.VariantType.Double, "power_kw": ua.VariantType.Double}
            values = m.values()
            for tag in TAGS:
                self._types[f"{mid}.{tag}"] = types[tag]
                var = await folder.add_variable(ua.NodeId(f"{mid}.{tag}", NS), ua.QualifiedName(tag, NS),
                                                ua.Variant(values[tag], types[tag]))
                if tag == "power_kw":
                    await var.add_property(ua.NodeId(f"{mid}.power_kw.EURange", NS), ua.QualifiedName("EURange", 0),
                                           ua.Range(0.0, 20.0))
        await server.start()
        self.server = server

    async def _secure(self, server: Server) -> None:
        key = self._dir() / "server_key.pem"
        _server_certificate(self.cert_path, key, APP_URI, self.host)
        await server.load_certificate(str(self.cert_path))
        await server.load_private_key(str(key))
        server.set_security_policy([
            ua.SecurityPolicyType.Basic256Sha256_Sign, ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
            ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign, ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
        ])
        server.set_identity_tokens([ua.UserNameIdentityToken])

    async def stop(self) -> None:
        """Stop listening; connected clients see their transport close."""
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop()

    async def write(self, machine_id: str, tag: str, value: Any, source_ts_us: int | None = None,
                    status: int = ua.StatusCodes.Good) -> None:
        """Write one tag with a source timestamp and status (tests use a Bad status to fake a sensor fault)."""
        assert self.server is not None, "start() first"
        ts = from_us(now_us() if source_ts_us is None else source_ts_us)
        dv = ua.DataValue(ua.Variant(value, self._types[f"{machine_id}.{tag}"]), StatusCode=ua.StatusCode(status),
                          SourceTimestamp=ts, ServerTimestamp=datetime.now(UTC))
        await self.server.write_attribute_value(ua.NodeId(f"{machine_id}.{tag}", NS), dv)

    async def update(self, t_us: int | None = None) -> None:
        """Advance every machine to t_us (if given) and write its values(), stamped with the machine's t_us."""
        for m in self.machines:
            if t_us is not None:
                m.advance_to(t_us)
            for tag, value in m.values().items():
                await self.write(m.spec.id, tag, value, source_ts_us=m.t_us)


def device_config(machine_ids: list[str], host: str, port: int) -> list[dict[str, Any]]:
    """Plant-file `devices:` entries (plain dicts) for machines served by an OpcUaPlc at host:port."""
    endpoint = f"opc.tcp://{host}:{port}/shopfloor/"
    return [{"id": f"{mid}-ua", "protocol": "opcua", "endpoint": endpoint, "security": {"policy": "None"},
             "tags": [{"name": tag, "node": node_id(mid, tag), "mode": "subscribe", "sampling_ms": 100}
                      for tag in TAGS]}
            for mid in machine_ids]


def signals_config() -> dict[str, Any]:
    """The machine `signals:` block matching device_config's tag names."""
    return {"state": {"tag": "status", "map": {1: "running", 2: "idle", 3: "down", 4: "setup", 5: "planned_stop"}},
            "total_count": {"tag": "parts_total"}, "scrap_count": {"tag": "parts_scrap"},
            "energy_kwh": {"tag": "energy_total"}}
