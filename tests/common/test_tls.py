"""TLS and mTLS from ASIARCH_TLS_*: real servers, real handshakes, certificates made here."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import grpc
import pytest
from certificates import OPENSSL, PKI, Pair, make_pki
from probe_service import ProbeSelector, running
from support import BIN, REPO

from asiarch.common.client import open_channel
from asiarch.common.config import ServerSettings, TLSSettings, load_settings
from asiarch.common.errors import ConfigError
from asiarch.v1 import selector_pb2, selector_pb2_grpc

pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl command makes the test certificates")
VARIABLES = ("ASIARCH_TLS_CERT", "ASIARCH_TLS_KEY", "ASIARCH_TLS_CA")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(autouse=True)
def no_tls_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def client(ca: Path | None = None, pair: Pair | None = None) -> TLSSettings:
    return TLSSettings(tls_ca=ca, tls_cert=pair and pair.cert, tls_key=pair and pair.key)


def served(pki: PKI, mutual: bool = False) -> dict[str, object]:
    """Server settings: the service certificate, and with `mutual` the CA its clients need."""
    return {"tls_cert": pki.service.cert, "tls_key": pki.service.key, "tls_ca": pki.ca if mutual else None}


async def outcome(channel: grpc.aio.Channel, strategy: str = "ok") -> str:
    """OK, or the status code the call ended with."""
    stub = selector_pb2_grpc.SelectorStub(channel)
    try:
        await stub.SelectParents(selector_pb2.SelectParentsRequest(strategy=strategy), timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    return "OK"


async def through(address: str, tls: TLSSettings) -> str:
    async with open_channel(address, tls=tls) as channel:
        return await outcome(channel)


async def plaintext(address: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        return await outcome(channel)


async def test_a_tls_server_answers_tls_clients_that_trust_its_ca_and_no_plaintext_client(
    tmp_path: Path, pki: PKI
) -> None:
    async with running(tmp_path, **served(pki)) as address:
        trusting = await through(address, client(ca=pki.ca))
        by_name = await through(address.replace("127.0.0.1", "localhost"), client(ca=pki.ca))
        untrusting = await through(address, client(ca=pki.other_ca))
        clear = await plaintext(address)
    assert (trusting, by_name) == ("OK", "OK")
    assert untrusting == "UNAVAILABLE"  # the server's certificate is not from the CA it was given
    assert clear == "UNAVAILABLE"


async def test_mtls_takes_only_clients_with_a_certificate_its_ca_signed(tmp_path: Path, pki: PKI) -> None:
    async with running(tmp_path, **served(pki, mutual=True)) as address:
        signed = await through(address, client(ca=pki.ca, pair=pki.client))
        without = await through(address, client(ca=pki.ca))
        impostor = await through(address, client(ca=pki.ca, pair=pki.impostor))
        clear = await plaintext(address)
    assert signed == "OK"
    assert (without, impostor, clear) == ("UNAVAILABLE", "UNAVAILABLE", "UNAVAILABLE")


async def test_services_calling_each_other_use_the_environments_tls_end_to_end(
    tmp_path: Path, pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As deployed: every process has ASIARCH_TLS_*; servers read them through their settings,
    # every channel (the test's, and the front service's call to the back one) through open_channel.
    for variable, path in zip(VARIABLES, (pki.service.cert, pki.service.key, pki.ca), strict=True):
        monkeypatch.setenv(variable, str(path))
    back = ProbeSelector()
    async with running(tmp_path, back) as back_address:  # noqa: SIM117 - the front needs the address
        async with running(tmp_path, ProbeSelector(downstream=back_address)) as address:
            async with open_channel(address) as channel:
                forwarded = await outcome(channel, "forward:ok")
            clear = await plaintext(address)
    assert forwarded == "OK" and len(back.seen) == 1
    assert clear == "UNAVAILABLE"


async def health_command(address: str, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(BIN / "asiarch"), "health", address, "--timeout", "5",
        env={"PATH": str(BIN), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def test_the_health_command_a_container_probe_runs_speaks_mtls_from_the_environment(
    tmp_path: Path, pki: PKI
) -> None:
    env = {"ASIARCH_TLS_CERT": str(pki.service.cert), "ASIARCH_TLS_KEY": str(pki.service.key)}
    env["ASIARCH_TLS_CA"] = str(pki.ca)
    async with running(tmp_path, **served(pki, mutual=True)) as address:
        with_tls = await health_command(address, env)
        without = await health_command(address, {})
    assert with_tls == (0, f"{address}\tSERVING\n")
    assert without[0] == 1 and "UNAVAILABLE" in without[1]


def test_a_certificate_without_its_key_is_refused_naming_both_variables(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASIARCH_TLS_CERT", str(pki.service.cert))
    with pytest.raises(ConfigError, match="ASIARCH_TLS_CERT is set but ASIARCH_TLS_KEY is not"):
        load_settings(ServerSettings)
    with pytest.raises(ConfigError, match="ASIARCH_TLS_CERT is set but ASIARCH_TLS_KEY is not"):
        load_settings(TLSSettings)  # a client's settings too


def test_a_server_given_only_a_ca_is_told_that_mtls_needs_a_certificate(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASIARCH_TLS_CA", str(pki.ca))
    with pytest.raises(ConfigError, match=r"ASIARCH_TLS_CA .* set ASIARCH_TLS_CERT and ASIARCH_TLS_KEY"):
        load_settings(ServerSettings)
    assert load_settings(TLSSettings).tls_ca == pki.ca  # a client with a CA only is fine


@pytest.mark.parametrize(
    ("setting", "path", "message"),
    [
        ("tls_key", "missing.key", r"ASIARCH_TLS_KEY: cannot read '.*missing.key': No such file"),
        ("tls_key", "service.crt", r"ASIARCH_TLS_KEY: .*service.crt' holds no PEM block with PRIVATE KEY"),
        ("tls_cert", "service.key", r"ASIARCH_TLS_CERT: .*service.key' holds no PEM block with BEGIN CERT"),
        ("tls_ca", "nowhere/ca.crt", r"ASIARCH_TLS_CA: cannot read '.*nowhere/ca.crt'"),
    ],
)
async def test_a_server_with_a_missing_or_wrong_file_stops_before_serving_naming_it(
    tmp_path: Path, pki: PKI, setting: str, path: str, message: str
) -> None:
    settings = {**served(pki, mutual=True), setting: pki.ca.parent / path}
    with pytest.raises(ConfigError, match=message):
        async with running(tmp_path, **settings):
            pass


async def test_a_client_with_a_missing_ca_file_fails_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASIARCH_TLS_CA", str(tmp_path / "absent-ca.crt"))
    with pytest.raises(ConfigError, match=r"ASIARCH_TLS_CA: cannot read .*absent-ca.crt"):
        open_channel("127.0.0.1:1")


def documented_recipe() -> str:
    """The shell block in docs/deploy.md that makes the deployment's certificates."""
    text = (REPO / "docs" / "deploy.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    [recipe] = [b for b in blocks if b.startswith("# mTLS certificates")]
    return recipe


async def test_the_certificates_docs_deploy_md_makes_work_for_mtls(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        "bash", "-euc", documented_recipe(), cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    pki = tmp_path / "pki"
    names = await asyncio.create_subprocess_exec(
        str(OPENSSL), "x509", "-in", str(pki / "tls.crt"), "-noout",
        "-ext", "subjectAltName,extendedKeyUsage",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    extensions = (await names.communicate())[0].decode()
    for name in ("DNS:selector", "DNS:engineer-pool", "DNS:analyst", "IP Address:127.0.0.1"):
        assert name in extensions
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in extensions
    shared = Pair(pki / "tls.crt", pki / "tls.key")
    settings = {"tls_cert": shared.cert, "tls_key": shared.key, "tls_ca": pki / "ca.crt"}
    async with running(tmp_path, **settings) as address:
        assert await through(address, client(ca=pki / "ca.crt", pair=shared)) == "OK"
        assert (
            await through(address.replace("127.0.0.1", "localhost"), client(pki / "ca.crt", shared)) == "OK"
        )
        assert await through(address, client(ca=pki / "ca.crt")) == "UNAVAILABLE"
