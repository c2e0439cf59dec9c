"""The dashboard's JSON API fuzzed from its own OpenAPI document (schemathesis, against the real server on
loopback over a filled store): no request it can form gets a 5xx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from support import DashboardServer, fill_sweep_store

from tuner import store


def test_no_request_gets_a_server_error(tmp_path: Path) -> None:
    """Each operation with hypothesis-generated cases (schemathesis's strategies; its pytest plugin does not load
    under this pytest)."""
    engine = store.open_store(None, tmp_path)
    fill_sweep_store(engine)
    with DashboardServer(engine) as server:
        schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{server.port}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 6
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def call(case: Any) -> None:
                case.call_and_validate(checks=[not_a_server_error])

            call()
    engine.dispose()


def test_the_fuzzed_api_is_the_documented_one(tmp_path: Path) -> None:
    engine = store.open_store(None, tmp_path)
    with DashboardServer(engine) as server:
        paths = schemathesis.openapi.from_url(f"http://127.0.0.1:{server.port}/openapi.json").raw_schema["paths"]
    engine.dispose()
    assert set(paths) == {"/api/sweeps", "/api/sweeps/{name}", "/api/sweeps/{name}/view", "/api/schedules",
                          "/api/view", "/api/jobs"}
