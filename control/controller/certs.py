"""The webhook's TLS material: a CA and a serving certificate, and the caBundle patch.

`generate` makes a self-signed CA and a serving certificate it signs for the given DNS names
and IP addresses (ECDSA P-256, SHA-256; valid for `VALID_DAYS`), as PEM, with `cryptography`.
`covers` says which requested names a certificate lacks (a Secret made for other names).
`ca_bundle_patch` is the JSON patch that sets every webhook's `clientConfig.caBundle` of a
ValidatingWebhookConfiguration to the CA, or [] when all already carry it. No I/O here.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# No rotation yet: the certificate lives as long as the Secret (delete it to renew).
VALID_DAYS = 3650
# The keys of a kubernetes.io/tls Secret, plus the CA (cert-manager's convention).
TLS_CRT, TLS_KEY, CA_CRT = "tls.crt", "tls.key", "ca.crt"


@dataclass(frozen=True)
class Bundle:
    """PEM bytes: the CA certificate, the serving certificate and its private key."""

    ca_crt: bytes
    tls_crt: bytes
    tls_key: bytes

    def as_secret_data(self) -> dict[str, bytes]:
        """The Secret's `data` (before base64)."""
        return {CA_CRT: self.ca_crt, TLS_CRT: self.tls_crt, TLS_KEY: self.tls_key}

    @classmethod
    def from_secret_data(cls, data: Mapping[str, bytes], where: str) -> Bundle:
        """The bundle in a Secret's data; ValueError naming the missing key."""
        missing = [k for k in (CA_CRT, TLS_CRT, TLS_KEY) if not data.get(k)]
        if missing:
            raise ValueError(f"{where}: data.{missing[0]}: missing or empty")
        return cls(data[CA_CRT], data[TLS_CRT], data[TLS_KEY])


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def generate(
    dns_names: Sequence[str], ip_addresses: Sequence[str], now: datetime.datetime
) -> Bundle:
    """A new CA and a serving certificate for `dns_names` and `ip_addresses` (SANs)."""
    if not dns_names and not ip_addresses:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=VALID_DAYS)
    ca_key = _key()
    ca_name = _name("spidernet-webhook-ca")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = _key()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_names[0] if dns_names else ip_addresses[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return Bundle(
        ca.public_bytes(serialization.Encoding.PEM),
        cert.public_bytes(serialization.Encoding.PEM),
        _pem_key(key),
    )


def covers(tls_crt: bytes, dns_names: Sequence[str], ip_addresses: Sequence[str]) -> list[str]:
    """The requested names the certificate `tls_crt` (PEM) does not carry as SANs."""
    cert = x509.load_pem_x509_certificate(tls_crt)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [*dns_names, *ip_addresses]
    have_dns = set(san.get_values_for_type(x509.DNSName))
    have_ips = {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    missing = [n for n in dns_names if n not in have_dns]
    return missing + [a for a in ip_addresses if str(ipaddress.ip_address(a)) not in have_ips]


def ca_bundle_patch(configuration: Mapping[str, Any], ca_crt: bytes) -> list[dict[str, Any]]:
    """JSON patch (RFC 6902) setting each webhook's clientConfig.caBundle to `ca_crt`; each
    change is guarded by a `test` of that webhook's name, so a concurrent edit that moved the
    list fails the patch instead of writing the wrong entry."""
    wanted = base64.b64encode(ca_crt).decode()
    ops: list[dict[str, Any]] = []
    for i, hook in enumerate(configuration.get("webhooks") or []):
        if (hook.get("clientConfig") or {}).get("caBundle") == wanted:
            continue
        ops.append({"op": "test", "path": f"/webhooks/{i}/name", "value": hook.get("name")})
        ops.append({"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": wanted})
    return ops
