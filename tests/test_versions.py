"""API versions with a lifecycle (issue 18.1): the table, the 90-day warning, the expiry.

The dates are Meta's Marketing API version table as read in December 2026
(https://developers.facebook.com/documentation/ads-commerce/marketing-api/marketing-api-changelog/versions):
v24.0 expired on November 10, 2026; v25.0 expires on February 23, 2027; v26.0 (July 29,
2026) and v27.0 (November 4, 2026) have no date yet.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from cronkeeper.config import Settings
from cronkeeper.errors import ConfigError
from cronkeeper.versions import (
    META_VERSIONS,
    expiry_samples,
    meta_version_key,
    pinned_versions,
    require_current,
    settings_warnings,
    version_warnings,
)

TODAY = date(2026, 12, 4)


def pins(meta: str = "v27.0", notion: str = "2025-09-03") -> tuple:  # type: ignore[type-arg]
    return pinned_versions(Settings(_env_file=None, meta_api_version=meta, notion_version=notion))


def test_the_default_meta_version_is_v27_which_meta_has_not_dated() -> None:
    assert Settings(_env_file=None).meta_api_version == "v27.0"
    assert version_warnings(pins(), TODAY) == []
    assert expiry_samples(pins()) == []


def test_the_table_holds_metas_published_dates() -> None:
    assert META_VERSIONS["v24.0"] == date(2026, 11, 10)
    assert META_VERSIONS["v25.0"] == date(2027, 2, 23)
    assert META_VERSIONS["v26.0"] is None
    assert META_VERSIONS["v27.0"] is None


def test_the_old_default_v24_has_expired_and_the_message_names_the_setting() -> None:
    [warning] = version_warnings(pins("v24.0"), TODAY)
    assert warning == (
        "Meta Marketing API version v24.0 expired on 2026-11-10: upgrade META_API_VERSION"
        " (latest: v27.0)"
    )


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2026, 11, 24), None),  # 91 days before
        (date(2026, 11, 25), "expires on 2027-02-23 (in 90 days)"),
        (date(2027, 2, 22), "expires on 2027-02-23 (in 1 day)"),
        (date(2027, 2, 23), "expired on 2027-02-23"),
    ],
)
def test_v25_warns_from_90_days_before_its_expiry(today: date, expected: str | None) -> None:
    warnings = version_warnings(pins("v25.0"), today)
    if expected is None:
        assert warnings == []
    else:
        [warning] = warnings
        assert expected in warning
        assert "upgrade META_API_VERSION" in warning


def test_a_version_older_than_the_table_counts_as_expired() -> None:
    [warning] = version_warnings(pins("v12.0"), TODAY)
    assert "v12.0 has expired" in warning
    with pytest.raises(ConfigError, match="META_API_VERSION"):
        require_current(pins("v12.0")[0], TODAY)


def test_a_version_newer_than_the_table_is_not_warned_about() -> None:
    assert version_warnings(pins("v28.0"), TODAY) == []


def test_require_current_refuses_an_expired_version_and_accepts_a_current_one() -> None:
    with pytest.raises(
        ConfigError, match=r"v24\.0 expired on 2026-11-10: upgrade META_API_VERSION"
    ):
        require_current(pins("v24.0")[0], TODAY)
    require_current(pins("v25.0")[0], TODAY)  # expiring is a warning, not an error


def test_the_gauge_samples_carry_the_expiry_as_a_unix_timestamp() -> None:
    assert expiry_samples(pins("v25.0")) == [
        ("meta", "v25.0", datetime(2027, 2, 23, tzinfo=UTC).timestamp())
    ]


def test_notion_versions_have_no_published_end_so_never_warn() -> None:
    assert version_warnings(pins(notion="2025-09-03"), TODAY) == []
    assert pins()[1].setting == "NOTION_VERSION"


def test_settings_warnings_read_today_in_utc() -> None:
    settings = Settings(_env_file=None, meta_api_version="v25.0")
    late = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)
    assert settings_warnings(settings, late) == []
    assert len(settings_warnings(settings, datetime(2026, 11, 25, tzinfo=UTC))) == 1


@pytest.mark.parametrize(
    ("given", "key"), [("v27.0", "v27.0"), ("27", "v27.0"), (" V25.0 ", "v25.0")]
)
def test_meta_api_version_is_normalised(given: str, key: str) -> None:
    assert meta_version_key(given) == key
    assert Settings(_env_file=None, meta_api_version=given).meta_api_version == key


def test_a_meta_api_version_that_is_no_version_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"v27\.0"):
        Settings(_env_file=None, meta_api_version="latest")
