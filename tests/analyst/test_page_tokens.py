"""A page token the analyst did not issue is INVALID_ARGUMENT naming page_token, whatever it holds."""

from __future__ import annotations

import base64

import pytest

from asiarch.analyst.repository import PageToken
from asiarch.common.errors import InvalidArgument

QUERY: dict[str, object] = {"run_id": "r"}


def _token(payload: str) -> str:
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def test_an_issued_token_decodes_to_its_offset() -> None:
    assert PageToken.decode(PageToken.encode(40, QUERY, 0), QUERY, 0) == 40


@pytest.mark.parametrize(
    "offset",
    ["Infinity", "-Infinity", "NaN", "1e400", "2.5", "-1", "true", '"7"', str(2**64), "null"],
)
def test_forged_offsets_are_refused(offset: str) -> None:
    fingerprint = PageToken._fingerprint(QUERY, 0)
    with pytest.raises(InvalidArgument, match="page_token is not a token this service issued"):
        PageToken.decode(_token(f'{{"o": {offset}, "q": "{fingerprint}"}}'), QUERY, 0)


@pytest.mark.parametrize("payload", ["[" * 100_000, "[]", '"x"', "{}"])
def test_forged_payloads_are_refused(payload: str) -> None:
    with pytest.raises(InvalidArgument, match="page_token"):
        PageToken.decode(_token(payload), QUERY, 0)
