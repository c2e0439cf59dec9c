"""tuner.service.local_cluster pieces that need no running cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner.service import local_cluster


def test_a_fresh_machine_gets_a_token_before_the_head_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # `ray start --head` with token auth exits at once when there is none (ray.init() would have made one).
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    local_cluster.ensure_token()
    token = (tmp_path / ".ray" / "auth_token").read_text().strip()
    assert len(token) >= 32
    local_cluster.ensure_token()  # an existing token is kept
    assert (tmp_path / ".ray" / "auth_token").read_text().strip() == token


def test_a_token_in_the_environment_is_used_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RAY_AUTH_TOKEN", "x" * 32)
    local_cluster.ensure_token()
    assert not (tmp_path / ".ray").exists()
