"""The certificates of one local control plane run: a CA, the API server's serving certificate, client
certificates for the components and the admin, and the service-account signing key.

Made fresh for every run (a few milliseconds with EC keys) and written as PEM files into the run's
folder, as ``kubeadm init`` would lay them out under ``/etc/kubernetes/pki``.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=2)
# The names a client may use to reach the API server: loopback, and the in-cluster Service of
# `kubernetes.default` (its ClusterIP is the first address of the service range).
API_SERVER_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local")
API_SERVER_ADDRESSES = ("127.0.0.1", "10.0.0.1")


@dataclasses.dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o600)
    return path


class CertificateAuthority:
    """A CA that signs the certificates of one control plane run, kept in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sdxl-sandbox-ca")])
        self._cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = self._cert.public_bytes(serialization.Encoding.PEM)
        self.cert = _write(folder / "ca.crt", self.cert_pem)

    def issue(self, name: str, common_name: str, *, organizations: tuple[str, ...] = (),
              server_names: tuple[str, ...] = (), server_addresses: tuple[str, ...] = ()) -> KeyPair:
        """A certificate for ``common_name`` (a user, to the API server) in groups ``organizations``.

        With ``server_names`` or ``server_addresses`` it is a serving certificate for those names.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] +
                            [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations])
        serving = bool(server_names or server_addresses)
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(self._cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH] if serving else [ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False)
        )
        if serving:
            alternative: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
            alternative += [x509.IPAddress(ipaddress.ip_address(a)) for a in server_addresses]
            builder = builder.add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return KeyPair(cert=_write(self.folder / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM)),
                       key=_write(self.folder / f"{name}.key", _pem_key(key)))


def service_account_keys(folder: Path) -> KeyPair:
    """The key pair that signs service-account tokens (RSA: what every Kubernetes version accepts).

    ``cert`` is the public key here, as kube-apiserver's ``--service-account-key-file`` reads it.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return KeyPair(cert=_write(folder / "sa.pub", public), key=_write(folder / "sa.key", _pem_key(key)))
