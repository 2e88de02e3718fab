"""The cluster secrets bundle, in ``talosctl gen secrets`` layout.

A bundle holds everything a cluster's machine configs share: the discovery identity, the
Kubernetes bootstrap token and etcd encryption secret, the trustd token, and the etcd,
Kubernetes, aggregator and Talos OS CAs plus the service-account key. Omni stores it in
``ImportedClusterSecrets`` as YAML with lower-case keys::

    cluster: {id, secret}
    secrets: {bootstraptoken, aescbcencryptionsecret | secretboxencryptionsecret}
    trustdinfo: {token}
    certs: {etcd, k8s, k8saggregator, os: {crt, key}, k8sserviceaccount: {key}}

where ``crt``/``key`` are base64 of PEM. In memory they are PEM bytes, and each CA is a
:class:`planner.machineconfig.pki.CertAndKey`, so leaves can be issued from it directly.

Three ways in: :meth:`SecretsBundle.from_yaml` (a file), :func:`bundle_from_config` (rebuilt
from a control-plane machine config, both the pre-1.14 v1alpha1 fields and the 1.14+
``Kube*CA`` / ``DiscoveryIdentityConfig`` / ``KubeEtcdEncryptionConfig`` documents) and
:func:`new_bundle` (fresh, like ``talosctl gen secrets``). :meth:`SecretsBundle.problems`
checks a bundle like Talos's ``Bundle.Validate`` (required fields, PEM parsing) and also that
each CA key belongs to its certificate.

No value of a bundle is ever shown by ``repr``/``str``; they print ``(sensitive value)``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import yaml
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from omniport.planner.errors import OmniportError
from omniport.planner.machineconfig import pki
from omniport.planner.machineconfig.contracts import Contract, features
from omniport.planner.machineconfig.document import Document, MachineConfig
from omniport.planner.machineconfig.pki import CertAndKey

SENSITIVE = "(sensitive value)"

RandomBytes = Callable[[int], bytes]

_TOKEN_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_SECRET_SIZE = 32


class SecretsError(OmniportError):
    """A secrets bundle that cannot be read, rebuilt or used."""


def _redacted(obj: object) -> str:
    parts = []
    for f in fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if value is None or value in ("", b""):
            shown = repr(value)
        elif f.name == "crt":
            shown = f"<certificate, {len(value)} bytes>"
        elif isinstance(value, str | bytes):
            shown = SENSITIVE
        else:
            shown = repr(value)
        parts.append(f"{f.name}={shown}")
    return f"{type(obj).__name__}({', '.join(parts)})"


class _Redacted:
    __slots__ = ()

    def __repr__(self) -> str:
        return _redacted(self)

    __str__ = __repr__


@dataclass(frozen=True, repr=False)
class KeyOnly(_Redacted):
    """A bare PEM private key (the Kubernetes service-account key)."""

    key: bytes = b""


@dataclass(frozen=True, repr=False)
class ClusterIdentity(_Redacted):
    """Discovery identity: ``id`` (32 bytes, base64) and ``secret`` (32 bytes, base64)."""

    id: str = ""
    secret: str = ""


@dataclass(frozen=True, repr=False)
class KubernetesSecrets(_Redacted):
    """Bootstrap token ``[a-z0-9]{6}.[a-z0-9]{16}`` and one etcd encryption secret."""

    bootstrap_token: str = ""
    aescbc_encryption_secret: str = ""
    secretbox_encryption_secret: str = ""


@dataclass(frozen=True, repr=False)
class TrustdInfo(_Redacted):
    """The machine token (``machine.token``) nodes use to get certificates from trustd."""

    token: str = ""


@dataclass(frozen=True, repr=False)
class Certs(_Redacted):
    """The CAs (``pki.CertAndKey``, PEM) and the service-account key of a cluster."""

    etcd: CertAndKey | None = None
    k8s: CertAndKey | None = None
    k8s_aggregator: CertAndKey | None = None
    k8s_service_account: KeyOnly | None = None
    os: CertAndKey | None = None


# (YAML key, attribute, type) of each section and certificate, in talosctl's order.
_CERTS = (
    ("etcd", "etcd", CertAndKey),
    ("k8s", "k8s", CertAndKey),
    ("k8saggregator", "k8s_aggregator", CertAndKey),
    ("k8sserviceaccount", "k8s_service_account", KeyOnly),
    ("os", "os", CertAndKey),
)
_SECRETS_KEYS = (
    ("bootstraptoken", "bootstrap_token"),
    ("aescbcencryptionsecret", "aescbc_encryption_secret"),
    ("secretboxencryptionsecret", "secretbox_encryption_secret"),
)
_NULLS = ("", "~", "null", "Null", "NULL")


@dataclass(frozen=True, repr=False)
class SecretsBundle(_Redacted):
    """A secrets bundle; a section is ``None`` when the source did not have it."""

    cluster: ClusterIdentity | None = None
    secrets: KubernetesSecrets | None = None
    trustd_info: TrustdInfo | None = None
    certs: Certs | None = None

    # ---- YAML layout ----

    def to_dict(self) -> dict[str, Any]:
        """The ``talosctl gen secrets`` mapping (lower-case keys, base64-of-PEM values)."""
        out: dict[str, Any] = {}
        if self.cluster is not None:
            out["cluster"] = {"id": self.cluster.id, "secret": self.cluster.secret}
        if self.secrets is not None:
            section = {"bootstraptoken": self.secrets.bootstrap_token}
            for yaml_key, attr in _SECRETS_KEYS[1:]:
                if getattr(self.secrets, attr):
                    section[yaml_key] = getattr(self.secrets, attr)
            out["secrets"] = section
        if self.trustd_info is not None:
            out["trustdinfo"] = {"token": self.trustd_info.token}
        if self.certs is not None:
            certs: dict[str, Any] = {}
            for yaml_key, attr, kind in _CERTS:
                value = getattr(self.certs, attr)
                if value is None:
                    continue
                entry = {"crt": _b64(value.crt)} if kind is CertAndKey else {}
                entry["key"] = _b64(value.key)
                certs[yaml_key] = entry
            out["certs"] = certs
        return out

    def to_yaml(self) -> str:
        """YAML as ``talosctl gen secrets`` writes it (4-space indent, no line folding)."""
        return yaml.safe_dump(
            self.to_dict(), sort_keys=False, indent=4, width=1 << 30, default_flow_style=False
        )

    def sha256(self) -> str:
        """A stable digest of the bundle (hex), for plans that must not hold the secrets."""
        return hashlib.sha256(self.to_yaml().encode()).hexdigest()

    @classmethod
    def from_yaml(cls, text: str | bytes, source: str = "secrets bundle") -> SecretsBundle:
        """Read the YAML layout; ``source`` names the file in errors."""
        try:
            # BaseLoader keeps every scalar a string, as Go's decoder does for these fields:
            # a token made only of digits must not turn into a number.
            data = yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506 - BaseLoader is safe
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or "malformed YAML"
            raise SecretsError(
                f"{source} is not valid YAML{where}: {problem}",
                "pass a file written by `omniport config secrets` or `talosctl gen secrets`",
            ) from None
        except (ValueError, OverflowError, RecursionError) as err:  # \U escape past U+10FFFF
            raise SecretsError(
                f"{source} is not valid YAML: {type(err).__name__}",
                "pass a file written by `omniport config secrets` or `talosctl gen secrets`",
            ) from None
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: object, source: str = "secrets bundle") -> SecretsBundle:
        """Read the mapping layout strictly: unknown keys and wrong types are errors."""
        reader = _Reader(source)
        top = reader.mapping(data, "", ("cluster", "secrets", "trustdinfo", "certs"))
        if top is None:
            raise SecretsError(f"{source} is empty", "pass a secrets bundle file")
        cluster = secrets = trustd = certs = None
        if (section := reader.mapping(top.get("cluster"), "cluster", ("id", "secret"))) is not None:
            cluster = ClusterIdentity(
                id=reader.text(section, "cluster", "id"),
                secret=reader.text(section, "cluster", "secret"),
            )
        allowed = tuple(k for k, _ in _SECRETS_KEYS)
        if (section := reader.mapping(top.get("secrets"), "secrets", allowed)) is not None:
            secrets = KubernetesSecrets(
                **{attr: reader.text(section, "secrets", key) for key, attr in _SECRETS_KEYS}
            )
        if (section := reader.mapping(top.get("trustdinfo"), "trustdinfo", ("token",))) is not None:
            trustd = TrustdInfo(token=reader.text(section, "trustdinfo", "token"))
        allowed = tuple(k for k, _, _ in _CERTS)
        if (section := reader.mapping(top.get("certs"), "certs", allowed)) is not None:
            values: dict[str, Any] = {}
            for yaml_key, attr, kind in _CERTS:
                path = f"certs.{yaml_key}"
                names = ("crt", "key") if kind is CertAndKey else ("key",)
                entry = reader.mapping(section.get(yaml_key), path, names)
                if entry is None:
                    continue
                pems = {n: reader.base64(entry, path, n) for n in names}
                values[attr] = kind(**pems)
            certs = Certs(**values)
        return cls(cluster=cluster, secrets=secrets, trustd_info=trustd, certs=certs)

    # ---- validation ----

    def problems(self) -> list[str]:
        """Every reason this bundle cannot generate configs (empty when it can)."""
        found: list[str] = []
        if self.cluster is None:
            found.append("cluster is missing")
        else:
            found += [
                f"cluster.{n} is missing" for n in ("id", "secret") if not getattr(self.cluster, n)
            ]
        if self.secrets is None:
            found.append("secrets is missing")
        else:
            if not self.secrets.bootstrap_token:
                found.append("secrets.bootstraptoken is missing")
            both = (self.secrets.aescbc_encryption_secret, self.secrets.secretbox_encryption_secret)
            if not any(both):
                found.append(
                    "one of secrets.secretboxencryptionsecret and "
                    "secrets.aescbcencryptionsecret is required"
                )
            elif all(both):
                found.append(
                    "only one of secrets.secretboxencryptionsecret and "
                    "secrets.aescbcencryptionsecret may be set"
                )
        if self.trustd_info is None:
            found.append("trustdinfo is missing")
        elif not self.trustd_info.token:
            found.append("trustdinfo.token is missing")
        if self.certs is None:
            found.append("certs is missing")
            return found
        for yaml_key, attr, kind in _CERTS:
            value = getattr(self.certs, attr)
            path = f"certs.{yaml_key}"
            if value is None:
                found.append(f"{path} is missing")
            elif kind is KeyOnly:
                found += _key_problems(value.key, path)
            else:
                found += _ca_problems(value, path)
        return found

    def validate(self, source: str = "secrets bundle") -> SecretsBundle:
        """Raise :class:`SecretsError` naming every problem; return ``self`` when usable."""
        found = self.problems()
        if found:
            raise SecretsError(
                f"{source} is invalid: {'; '.join(found)}",
                "regenerate it with `omniport config secrets --from-controlplane-config` "
                "or `talosctl gen secrets`",
            )
        return self


# PEM labels Talos's key parser accepts (the first block's label decides).
_KEY_LABELS = ("RSA PRIVATE KEY", "EC PRIVATE KEY", pki.ED25519_KEY_LABEL, "PRIVATE KEY")


def _load_key(pem: bytes, path: str) -> tuple[pki.PrivateKey | None, list[str]]:
    labels = pki.pem_labels(pem)
    if not labels:
        return None, [f"{path} is invalid: no PEM block found"]
    if labels[0] not in _KEY_LABELS:
        return None, [f"{path} is invalid: unsupported key type {labels[0]!r}"]
    try:
        return pki.load_private_key(pem), []
    except (pki.PKIError, UnsupportedAlgorithm) as err:
        return None, [f"{path} is invalid: {err}"]


def _key_problems(pem: bytes, path: str) -> list[str]:
    if not pem:
        return [f"{path}.key is missing"]
    return _load_key(pem, f"{path}.key")[1]


def _ca_problems(value: CertAndKey, path: str) -> list[str]:
    found: list[str] = []
    key = cert = None
    if not value.key:
        found.append(f"{path}.key is missing")
    else:
        key, problems = _load_key(value.key, f"{path}.key")
        found += problems
    if not value.crt:
        found.append(f"{path}.crt is missing")
    elif "CERTIFICATE" not in pki.pem_labels(value.crt):
        found.append(f"{path}.crt is invalid: no CERTIFICATE block found")
    else:
        try:
            cert = pki.load_certificate(value.crt)
        except (pki.PKIError, UnsupportedAlgorithm) as err:
            found.append(f"{path}.crt is invalid: {err}")
    if key is not None and cert is not None and not _same_public_key(cert, key):
        found.append(f"{path}.key does not belong to {path}.crt")
    return found


def _same_public_key(cert: Any, key: pki.PrivateKey) -> bool:
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        return cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
    except (ValueError, UnsupportedAlgorithm):
        return False


class _Reader:
    """Strict readers over BaseLoader data, naming the path of every problem."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> SecretsError:
        where = f"{self.source}: {path}" if path else self.source
        return SecretsError(
            f"{where} {problem}",
            "fix the file, or regenerate it with `omniport config secrets`",
        )

    def mapping(self, value: object, path: str, allowed: Sequence[str]) -> dict[str, Any] | None:
        if value is None or (isinstance(value, str) and value in _NULLS):
            return None
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a mapping, not {_kind(value)}")
        for key in value:
            if key not in allowed:
                dotted = f"{path}.{key}" if path else str(key)
                raise self.fail(
                    dotted, f"is not a known key (expected one of {', '.join(allowed)})"
                )
        return value

    def text(self, section: Mapping[str, Any], path: str, key: str) -> str:
        value = section.get(key, "")
        if value is None or (isinstance(value, str) and value in _NULLS):
            return ""
        if not isinstance(value, str):
            raise self.fail(f"{path}.{key}", f"must be a string, not {_kind(value)}")
        return value

    def base64(self, section: Mapping[str, Any], path: str, key: str) -> bytes:
        text = self.text(section, path, key)
        try:
            return base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise self.fail(f"{path}.{key}", "is not valid base64") from None


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "a scalar"


def _b64(pem: bytes) -> str:
    return base64.b64encode(pem).decode("ascii")


# ---- rebuilding a bundle from a machine config ----


def bundle_from_config(
    documents: MachineConfig | Iterable[Document | Mapping[str, Any]],
    source: str = "machine config",
) -> SecretsBundle:
    """Rebuild the bundle a control-plane (or init) config was generated from.

    Reads the 1.14+ documents where present and the v1alpha1 fields otherwise. From a
    ``KubeEtcdEncryptionConfig`` only the first secretbox key of the first provider covering
    ``secrets`` is taken (as Talos does); other providers and keys are not part of a bundle.
    A worker config carries no CA keys, so it raises :class:`SecretsError`.
    """
    if isinstance(documents, MachineConfig):
        documents = documents.documents
    legacy: Mapping[str, Any] | None = None
    by_kind: dict[str, Mapping[str, Any]] = {}
    count = 0
    for index, item in enumerate(documents):
        count += 1
        doc = item.data if isinstance(item, Document) else item
        if not isinstance(doc, Mapping):
            raise SecretsError(
                f"{source}: document {index + 1} is not a mapping", "pass a Talos machine config"
            )
        kind = doc.get("kind")
        if kind is None and legacy is None and ("machine" in doc or "cluster" in doc):
            legacy = doc
        elif isinstance(kind, str):
            by_kind.setdefault(kind, doc)
    if legacy is None:
        raise SecretsError(
            f"{source} has no v1alpha1 document (the one with `machine:` and `cluster:`)"
            + ("" if count else "; it is empty"),
            "pass a Talos control-plane machine config",
        )
    get = _Getter(source)
    machine = get.mapping(legacy, "machine")
    cluster = get.mapping(legacy, "cluster")
    machine_type = get.text(machine, "machine.type")
    if machine_type == "worker":
        raise SecretsError(
            f"{source} is a worker config, and worker configs carry no CA private keys",
            "pass a control-plane config (machine.type: controlplane) to rebuild the bundle",
        )

    identity = by_kind.get("DiscoveryIdentityConfig")
    if identity is not None:
        cluster_id = get.text(identity, "DiscoveryIdentityConfig.clusterID")
        cluster_secret = get.text(identity, "DiscoveryIdentityConfig.clusterSecret")
    else:
        cluster_id = get.text(cluster, "cluster.id")
        cluster_secret = get.text(cluster, "cluster.secret")

    secretbox = get.text(cluster, "cluster.secretboxEncryptionSecret")
    aescbc = get.text(cluster, "cluster.aescbcEncryptionSecret")
    encryption = by_kind.get("KubeEtcdEncryptionConfig")
    if encryption is not None:
        secretbox = _secretbox_from_encryption_config(encryption.get("config")) or secretbox

    certs = Certs(
        etcd=get.b64_ca(get.mapping(cluster, "cluster.etcd"), "cluster.etcd.ca"),
        k8s=_issuing_ca(get, by_kind, "KubeAPIServerCAConfig", cluster, "cluster.ca"),
        k8s_aggregator=_issuing_ca(
            get, by_kind, "KubeAggregatorCAConfig", cluster, "cluster.aggregatorCA"
        ),
        k8s_service_account=_service_account(get, by_kind, cluster),
        os=get.b64_ca(machine, "machine.ca"),
    )
    bundle = SecretsBundle(
        cluster=ClusterIdentity(id=cluster_id, secret=cluster_secret),
        secrets=KubernetesSecrets(
            bootstrap_token=get.text(cluster, "cluster.token"),
            aescbc_encryption_secret=aescbc,
            secretbox_encryption_secret=secretbox,
        ),
        trustd_info=TrustdInfo(token=get.text(machine, "machine.token")),
        certs=certs,
    )
    found = bundle.problems()
    if found:
        raise SecretsError(
            f"{source} does not carry a complete secrets bundle: {'; '.join(found)}",
            "pass the full control-plane config the cluster runs",
        )
    return bundle


def _issuing_ca(
    get: _Getter,
    by_kind: Mapping[str, Mapping[str, Any]],
    kind: str,
    cluster: Mapping[str, Any],
    legacy_path: str,
) -> CertAndKey | None:
    doc = by_kind.get(kind)
    if doc is None:
        return get.b64_ca(cluster, legacy_path)
    issuing = get.mapping(doc, f"{kind}.issuingCA")
    if not issuing:
        return None
    return CertAndKey(
        crt=get.text(issuing, f"{kind}.issuingCA.cert").encode(),
        key=get.text(issuing, f"{kind}.issuingCA.key").encode(),
    )


def _service_account(
    get: _Getter, by_kind: Mapping[str, Mapping[str, Any]], cluster: Mapping[str, Any]
) -> KeyOnly | None:
    doc = by_kind.get("KubeServiceAccountConfig")
    if doc is not None:
        issuer = get.mapping(doc, "KubeServiceAccountConfig.issuer")
        key = get.text(issuer, "KubeServiceAccountConfig.issuer.privateKey")
        return KeyOnly(key=key.encode()) if key else None
    account = get.mapping(cluster, "cluster.serviceAccount")
    if not account:
        return None
    return KeyOnly(key=get.b64(account, "cluster.serviceAccount.key"))


def _secretbox_from_encryption_config(config: object) -> str:
    """The first secretbox key of the first provider of the first block covering secrets."""
    blocks = config.get("resources") if isinstance(config, Mapping) else None
    for block in blocks if isinstance(blocks, list) else ():
        covered = block.get("resources") if isinstance(block, Mapping) else None
        if not isinstance(covered, list) or "secrets" not in covered:
            continue
        providers = block.get("providers") or ()
        first = providers[0] if isinstance(providers, list) and providers else None
        box = first.get("secretbox") if isinstance(first, Mapping) else None
        keys = box.get("keys") if isinstance(box, Mapping) else None
        if isinstance(keys, list) and keys and isinstance(keys[0], Mapping):
            secret = keys[0].get("secret")
            return secret if isinstance(secret, str) else ""
        return ""
    return ""


class _Getter:
    """Typed reads from a parsed machine config, with errors naming the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def _fail(self, path: str, problem: str) -> SecretsError:
        return SecretsError(f"{self.source}: {path} {problem}", "pass a valid Talos machine config")

    def mapping(self, parent: Mapping[str, Any], path: str) -> Mapping[str, Any]:
        value = parent.get(path.rsplit(".", 1)[-1])
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self._fail(path, "must be a mapping")
        return value

    def text(self, parent: Mapping[str, Any], path: str) -> str:
        value = parent.get(path.rsplit(".", 1)[-1])
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self._fail(path, "must be a string")
        return value

    def b64(self, parent: Mapping[str, Any], path: str) -> bytes:
        text = self.text(parent, path)
        try:
            return base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise self._fail(path, "is not valid base64") from None

    def b64_ca(self, parent: Mapping[str, Any], path: str) -> CertAndKey | None:
        section = self.mapping(parent, path)
        if not section:
            return None
        return CertAndKey(
            crt=self.b64(section, f"{path}.crt"), key=self.b64(section, f"{path}.key")
        )


# ---- fresh bundles ----


def new_bundle(
    contract: Contract | str,
    now: dt.datetime,
    *,
    random_bytes: RandomBytes = os.urandom,
    rsa_key_size: int = 4096,
) -> SecretsBundle:
    """A fresh bundle like ``talosctl gen secrets`` for ``contract``.

    ECDSA P-256 etcd, Kubernetes and aggregator CAs and an Ed25519 OS CA (issued by
    :mod:`planner.machineconfig.pki`); an RSA (contract 1.7+) or ECDSA service-account key;
    Talos-format tokens; 32-byte secrets. ``now`` starts the CA validity (a naive datetime is
    taken as UTC). ``random_bytes`` supplies the tokens, secrets and cluster ID; key pairs and
    serials come from OpenSSL's generator.
    """
    if isinstance(rsa_key_size, bool) or not isinstance(rsa_key_size, int) or rsa_key_size < 2048:
        raise SecretsError(
            f"RSA key size {rsa_key_size!r} is too small",
            "use 2048 bits or more (Talos uses 4096)",
        )
    if not isinstance(now, dt.datetime):
        raise SecretsError("now must be a datetime", "pass datetime.now(timezone.utc)")
    feats = features(contract)
    start = now if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)
    if feats.rsa_service_account_key:
        account = pki.generate_key(pki.KeyAlgorithm.RSA, rsa_bits=rsa_key_size)
    else:
        account = pki.generate_key(pki.KeyAlgorithm.ECDSA_P256)
    cluster_id = random_bytes(_SECRET_SIZE)
    encryption = base64.b64encode(random_bytes(_SECRET_SIZE)).decode()
    encode_id = base64.b64encode if feats.std_base64_cluster_id else base64.urlsafe_b64encode
    return SecretsBundle(
        cluster=ClusterIdentity(
            id=encode_id(cluster_id).decode(),
            secret=base64.b64encode(random_bytes(_SECRET_SIZE)).decode(),
        ),
        secrets=KubernetesSecrets(
            bootstrap_token=new_token(random_bytes),
            secretbox_encryption_secret=encryption if feats.secretbox_encryption else "",
            aescbc_encryption_secret="" if feats.secretbox_encryption else encryption,
        ),
        trustd_info=TrustdInfo(token=new_token(random_bytes)),
        certs=Certs(
            etcd=pki.etcd_ca(start),
            k8s=pki.kubernetes_ca(start),
            k8s_aggregator=pki.aggregator_ca(start),
            k8s_service_account=KeyOnly(key=pki.private_key_pem(account)),
            os=pki.talos_os_ca(start),
        ),
    )


def new_token(random_bytes: RandomBytes = os.urandom) -> str:
    """A token in Talos/kubeadm format: ``[a-z0-9]{6}.[a-z0-9]{16}``."""
    return f"{_token_part(6, random_bytes)}.{_token_part(16, random_bytes)}"


def _token_part(length: int, random_bytes: RandomBytes) -> str:
    # 252 is the largest multiple of 36 below 256: rejecting bytes above it keeps every
    # character equally likely.
    out: list[str] = []
    while len(out) < length:
        for byte in random_bytes(length * 2):
            if byte < 252 and len(out) < length:
                out.append(_TOKEN_ALPHABET[byte % 36])
    return "".join(out)
