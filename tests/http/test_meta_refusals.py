"""Meta answers no wait fixes, classified once (issue 18.1, 18.3).

- #2635 "You are calling a deprecated version of the Ads API" (the wording reported against
  facebook-python-business-sdk, issue #148): :class:`ApiVersionRefused`, never retried.
- 100/1504018 and 2/1504038 "Request Timed Out: Try a smaller date range" (Ads Insights API
  error codes): :class:`TooMuchData`, never retried over the same range (code 2 is otherwise
  transient, so main retried it).
"""

from __future__ import annotations

import json

import httpx
import pytest

from cronkeeper.errors import ApiVersionRefused, FetchError, TooMuchData
from cronkeeper.http import HttpContext, RetryPolicy

URL = "https://graph.test/v24.0/act_42/insights"


def _body(code: int, subcode: int | None = None, message: str = "boom") -> bytes:
    error: dict[str, object] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    return json.dumps({"error": error}).encode()


async def _fetch(body: bytes, status: int = 400) -> tuple[Exception, int]:
    calls = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(status, content=body)

    async def no_sleep(seconds: float) -> None:
        return None

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        http = HttpContext(client, policy=RetryPolicy(max_retries=3), sleep=no_sleep)
        with pytest.raises(FetchError) as caught:
            await http.fetch("GET", URL, params={"access_token": "tok-secret-123456"})
    return caught.value, calls


async def test_2635_is_a_version_refusal_naming_the_setting_and_is_not_retried() -> None:
    message = "(#2635) You are calling a deprecated version of the Ads API. Please update to v27.0."
    error, calls = await _fetch(_body(2635, message=message))
    assert isinstance(error, ApiVersionRefused)
    assert calls == 1
    assert "no longer serves version v24.0; upgrade META_API_VERSION" in str(error)
    assert "tok-secret" not in str(error)


async def test_any_deprecated_version_answer_is_a_version_refusal() -> None:
    error, _ = await _fetch(b'{"message": "This API version is a deprecated version"}', 410)
    assert isinstance(error, ApiVersionRefused)


@pytest.mark.parametrize(("code", "subcode"), [(100, 1504018), (2, 1504038)])
async def test_request_timed_out_is_too_much_data_and_not_retried(code: int, subcode: int) -> None:
    error, calls = await _fetch(_body(code, subcode, "Your request timed out."))
    assert isinstance(error, TooMuchData)
    assert calls == 1
    assert f"Meta error {code}/{subcode}" in str(error)


async def test_code_2_without_that_subcode_is_still_transient() -> None:
    error, calls = await _fetch(_body(2))
    assert calls == 4  # 1 + 3 retries
    assert not isinstance(error, TooMuchData)
