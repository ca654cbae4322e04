"""The Slack Web API client the adapter uses: one AsyncWebClient, 429s retried.

A 429 means Slack did not carry out the call, so retrying it after Retry-After cannot post a
message twice; the reply lands exactly once, only later.
"""

from __future__ import annotations

from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

SLACK_API_URL = "https://slack.com/api/"


def make_client(token: str, api_url: str = SLACK_API_URL,
                rate_limit_retries: int = 3) -> AsyncWebClient:
    return AsyncWebClient(
        token=token,
        base_url=api_url,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(),  # the SDK's default
            AsyncRateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),
        ],
    )
