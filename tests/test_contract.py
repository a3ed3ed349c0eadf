"""Schema-driven property test: generated requests never get a 5xx or a response off-contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

import batch_assign.sandbox as sandbox_pkg
from batch_assign.sandbox import DEFAULT_API_KEY, RunningSandbox, SandboxSettings, serve_in_thread

SPEC = Path(sandbox_pkg.__file__).with_name("openapi.yaml")
schema = schemathesis.openapi.from_path(SPEC)


@pytest.fixture(scope="module")
def contract_sandbox() -> Iterator[RunningSandbox]:
    seed = {
        "workflows": [{"id": "6a1f0c1e-58d1-4a36-9a4e-0f4f2d4d8b11", "name": "Outbound"}],
        "leads": [{"id": "0b7e5b0c-1d9f-4a7b-8d8a-2f7c3c9e6a21", "first_name": "Ada"}],
    }
    with serve_in_thread(seed=seed, settings=SandboxSettings(rate_limit=0)) as box:
        yield box


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_sandbox_honours_the_contract(
    case: schemathesis.Case, contract_sandbox: RunningSandbox
) -> None:
    """Any request the schema allows (and many it does not) gets a documented answer, never a 5xx."""
    case.headers = {**(case.headers or {}), "X-API-Key": DEFAULT_API_KEY}
    response = case.call(base_url=contract_sandbox.url)
    assert response.status_code < 500, response.text
    case.validate_response(
        response,
        checks=[
            schemathesis.checks.not_a_server_error,
            schemathesis.checks.status_code_conformance,
            schemathesis.checks.content_type_conformance,
            schemathesis.checks.response_schema_conformance,
            schemathesis.checks.response_headers_conformance,
        ],
    )
