"""The Meta simulator at an agency's scale (issue 17): the documented scenario."""

from __future__ import annotations

from collections import Counter

from cronkeeper.sandbox import agency_scenario
from cronkeeper.sandbox.meta import AGENCY_CURRENCIES, AGENCY_ZONES


def test_a_thousand_accounts_with_the_documented_mix() -> None:
    world = agency_scenario()
    assert len(world.accounts) == len(set(world.ids)) == 1000
    assert len(world.inactive) == 30
    assert len(world.forbidden) == 10
    assert len(world.active) == 960
    assert not set(world.inactive) & set(world.forbidden)
    assert Counter(a.timezone_name for a in world.accounts).keys() == set(AGENCY_ZONES)
    assert Counter(a.currency for a in world.accounts).keys() == set(AGENCY_CURRENCIES)
    statuses = Counter(a.account_status for a in world.accounts if a.account_status != 1)
    assert statuses == {2: 6, 101: 6, 3: 6, 7: 6, 100: 6}
    assert world.policy.app_calls < 3 * 1000  # binding: a run needs more than one window
    assert agency_scenario() == world  # deterministic


def test_smaller_worlds_keep_the_shares() -> None:
    world = agency_scenario(200, inactive_per_100=5, forbidden_per_100=2)
    assert (len(world.inactive), len(world.forbidden)) == (10, 4)
