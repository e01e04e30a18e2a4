"""``cronkeeper run sync-notion --force`` (issue 19): the one way past NOTION_MAX_DEACTIVATE."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cronkeeper.sandbox import serve_app
from tests.cli.test_cli import cli, cli_process
from tests.faults.hostile import StandIn, notion, notion_page

PAGES = [notion_page(n, f"Client {n}", str(5000 + n)) for n in range(10)]


@pytest.fixture
def registry() -> Iterator[tuple[list[dict[str, Any]], str]]:
    listed = list(PAGES)
    with serve_app(StandIn(notion(lambda: listed))) as base:
        yield listed, base


def test_force_lets_a_large_deactivation_through_and_only_for_sync_notion(
    registry: tuple[list[dict[str, Any]], str], tmp_path: Path
) -> None:
    listed, base = registry
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/c.db",
        "NOTION_TOKEN": "ntn_cli_token_0123456789",
        "NOTION_DATA_SOURCE_ID": "5f0c8c2e-0d6b-4c3a-9a57-4a1f2b3c4d5e",
        "NOTION_API_BASE": base,
    }
    assert cli("run", "sync-notion", env=env, cwd=tmp_path).returncode == 0
    del listed[7:]  # 3 of 10 gone: above the default 20 %

    refused = cli("run", "sync-notion", env=env, cwd=tmp_path)
    assert refused.returncode == 1
    assert "refusing to deactivate 3 of 10 active accounts" in refused.stdout

    forced = cli("run", "sync-notion", "--force", env=env, cwd=tmp_path)
    assert forced.returncode == 0, forced.stdout + forced.stderr

    misused = cli("run", "collect-daily", "--force", env=env, cwd=tmp_path)
    assert misused.returncode == 2
    assert "--force applies to sync-notion only" in misused.stderr


def test_runs_prints_a_stored_markup_like_notion_name_as_text(
    registry: tuple[list[dict[str, Any]], str], tmp_path: Path
) -> None:
    # Issue 19: a Notion page named `Acme [/b]` made `cronkeeper runs` exit 1 (Rich markup).
    listed, base = registry
    listed[:] = [PAGES[0], notion_page(99, "Acme [/b] [link=https://evil.test]x", "n/a")]
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/r.db",
        "NOTION_TOKEN": "ntn_cli_token_0123456789",
        "NOTION_DATA_SOURCE_ID": "5f0c8c2e-0d6b-4c3a-9a57-4a1f2b3c4d5e",
        "NOTION_API_BASE": base,
    }
    assert cli("run", "sync-notion", env=env, cwd=tmp_path).returncode == 3  # partial

    # A real process: the table's width comes from COLUMNS when the console is created.
    shown = cli_process("runs", env={**env, "COLUMNS": "400"}, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "Acme [/b] [link=https://evil.test]x" in shown.stdout
