"""OPC UA channel security: policy/mode, client certificate, user identity and a server trust list.

asyncua trusts any server certificate it is shown (trust on first use) unless a validator is set; with
`trust_dir` we install `CertificateValidator(TRUSTED_VALIDATION | PEER_SERVER, TrustStore([trust_dir]))`.
Relative paths in `security:` are resolved against the plant file's folder (`config_dir`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from ipaddress import ip_address
from pathlib import Path

from asyncua import Client, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import security_policies
from asyncua.crypto.cert_gen import (
    dump_private_key_as_pem,
    generate_private_key,
    generate_self_signed_app_certificate,
)
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from core.errors import ConfigError
from edge.drivers.opcua.config import Security

POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
}
MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}


def resolve(path: str, config_dir: Path) -> Path:
    """A path from the config: absolute as is, relative to the plant file's folder otherwise."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else config_dir / p


def password_from_env(sec: Security) -> str | None:
    """The user's password from the variable named by password_env; ConfigError if it is missing."""
    if sec.username is None:
        return None
    if not sec.password_env:
        raise ConfigError(f"security.username {sec.username!r} needs password_env (the environment variable "
                          "holding the password; passwords never go in the file)")
    pwd = os.environ.get(sec.password_env)
    if pwd is None:
        raise ConfigError(f"environment variable {sec.password_env} (security.password_env) is not set: "
                          f"export the password of OPC UA user {sec.username!r} in it")
    return pwd


def thumbprint(cert: x509.Certificate) -> str:
    return hashlib.sha1(cert.public_bytes(Encoding.DER)).hexdigest()  # noqa: S324 - OPC UA thumbprints are SHA-1


def app_uri_of(cert: x509.Certificate) -> str | None:
    """The ApplicationUri in the certificate's SubjectAltName (the client must announce the same)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


class TrustListValidator:
    """Validates the server certificate against trust_dir and remembers a rejected one for the error text."""

    def __init__(self, trust_dir: Path) -> None:
        self.trust_dir = trust_dir
        self.store = TrustStore([trust_dir], [])
        self.validator = CertificateValidator(
            CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_SERVER, self.store)
        self.rejected: x509.Certificate | None = None
        self.empty = False

    async def load(self) -> None:
        self.empty = not any(p.suffix.lower() in (".der", ".pem") for p in self.trust_dir.iterdir())
        if not self.empty:  # cryptography refuses an empty Store; an empty trust list trusts nobody
            await self.store.load()

    async def __call__(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        try:
            if self.empty:
                raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)
            await self.validator.validate(cert, app)
        except Exception:
            self.rejected = cert
            raise

    def explain(self, exc: BaseException) -> str:
        """One actionable line for a rejected server certificate; saves it to <trust_dir>/../rejected/."""
        cert = self.rejected
        if cert is None:
            return str(exc)
        cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        name = str(cn[0].value) if cn else "server"
        tp = thumbprint(cert)
        where = self.trust_dir.parent / "rejected" / f"{_safe(name)}_{tp[:16]}.der"
        try:
            where.parent.mkdir(parents=True, exist_ok=True)
            where.write_bytes(cert.public_bytes(Encoding.DER))
            saved = f"saved to {where}"
        except OSError as err:
            saved = f"could not save it ({err.strerror})"
        return (f"server certificate CN={name} (SHA-1 thumbprint {tp}) rejected ({exc}); if you trust this "
                f"server, check the thumbprint on the device and copy its certificate ({saved}) into {self.trust_dir}")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:64]


async def apply_security(client: Client, sec: Security | None, config_dir: Path,
                         log: logging.Logger) -> TrustListValidator | None:
    """Configure identity, channel security and the trust list on a not-yet-connected client."""
    if sec is None:
        return None
    if sec.username is not None:
        client.set_user(sec.username)
        client.set_password(password_from_env(sec) or "")
    if sec.policy == "None":
        return None
    assert sec.certificate and sec.private_key  # enforced by the config model
    cert_path, key_path = resolve(sec.certificate, config_dir), resolve(sec.private_key, config_dir)
    for what, p in (("certificate", cert_path), ("private_key", key_path)):
        if not p.is_file():
            raise ConfigError(f"security.{what}: {p} does not exist (relative paths are read from the plant "
                              "file's folder; generate a pair with edge.drivers.opcua.security.generate_certificate)")
    from asyncua.crypto import uacrypto

    own = await uacrypto.load_certificate(str(cert_path))
    uri = app_uri_of(own)
    if uri:
        client.application_uri = uri  # must match the certificate's SAN, or servers reject the session
    validator: TrustListValidator | None = None
    if sec.trust_dir:
        trust_dir = resolve(sec.trust_dir, config_dir)
        if not trust_dir.is_dir():
            raise ConfigError(f"security.trust_dir: {trust_dir} is not a directory")
        validator = TrustListValidator(trust_dir)
        try:
            await validator.load()
        except ValueError as exc:
            raise ConfigError(f"security.trust_dir {trust_dir}: a file there is not a certificate ({exc}); keep "
                              "only the trusted servers' .der/.pem certificates (no private keys) in it") from exc
        client.certificate_validator = validator
    else:
        log.warning("opcua endpoint=%s security=%s trust_dir=unset: the server certificate is accepted "
                    "without checking (trust on first use); set security.trust_dir", client.server_url.geturl(),
                    sec.policy)
    await client.set_security(POLICIES[sec.policy], str(cert_path), str(key_path), mode=MODES[sec.mode])
    return validator


def generate_certificate(cert_path: str | Path, key_path: str | Path, app_uri: str,
                         host: str = "localhost", server: bool = False, days: int = 365) -> x509.Certificate:
    """Write a self-signed application certificate (DER) and its key (PEM) for tests and first setup."""
    key = generate_private_key()
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(app_uri), x509.DNSName(host),
                                     x509.DNSName(socket.gethostname())]
    try:
        names.append(x509.IPAddress(ip_address(host)))
    except ValueError:
        pass
    use = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if server else \
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = generate_self_signed_app_certificate(key, app_uri, {}, names, extended=use, days=days)
    Path(cert_path).parent.mkdir(parents=True, exist_ok=True)
    Path(key_path).parent.mkdir(parents=True, exist_ok=True)
    Path(cert_path).write_bytes(cert.public_bytes(Encoding.DER))
    Path(key_path).write_bytes(dump_private_key_as_pem(key))
    return cert
