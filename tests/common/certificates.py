"""Throw-away certificates for TLS tests, made with the `openssl` command line.

`make_pki(folder)` writes a CA, a certificate it signed for localhost and
127.0.0.1 (server and client use, as each service's one certificate is), a
second certificate it signed (another client), and a certificate from an
unrelated CA (an impostor). EC P-256 keys: fast to generate.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = shutil.which("openssl")
EXTENSIONS = (
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature\n"
    "extendedKeyUsage=serverAuth,clientAuth\n"
    "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
)


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class PKI:
    ca: Path
    service: Pair  # signed by ca, for localhost / 127.0.0.1
    client: Pair  # signed by ca
    impostor: Pair  # signed by another CA
    other_ca: Path


def _openssl(*args: str | Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *map(str, args)], check=True, capture_output=True, timeout=60)


def _key_args(key: Path) -> list[str | Path]:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key]


def _authority(folder: Path, name: str) -> Pair:
    pair = Pair(folder / f"{name}.crt", folder / f"{name}.key")
    _openssl("req", "-x509", *_key_args(pair.key), "-out", pair.cert, "-days", "2", "-subj", f"/CN={name}")
    return pair


def _signed(folder: Path, name: str, authority: Pair) -> Pair:
    pair = Pair(folder / f"{name}.crt", folder / f"{name}.key")
    request, extensions = folder / f"{name}.csr", folder / f"{name}.ext"
    extensions.write_text(EXTENSIONS)
    _openssl("req", "-new", *_key_args(pair.key), "-out", request, "-subj", f"/CN={name}")
    _openssl(
        "x509", "-req", "-in", request, "-CA", authority.cert, "-CAkey", authority.key, "-CAcreateserial",
        "-out", pair.cert, "-days", "2", "-extfile", extensions,
    )  # fmt: skip
    return pair


def make_pki(folder: Path) -> PKI:
    folder.mkdir(parents=True, exist_ok=True)
    ca, other = _authority(folder, "ca"), _authority(folder, "other-ca")
    return PKI(
        ca=ca.cert,
        service=_signed(folder, "service", ca),
        client=_signed(folder, "client", ca),
        impostor=_signed(folder, "impostor", other),
        other_ca=other.cert,
    )
