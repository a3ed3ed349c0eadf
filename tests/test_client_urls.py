"""The client's URL joiner gives exactly the URL httpx would parse, fast path or not."""

from __future__ import annotations

import httpx
import pytest

from batch_assign.client import _UrlJoiner

BASES = [
    "http://127.0.0.1:8080/api/public",
    "https://api.nexor.example/api/public",
    "https://api.nexor.example:443/api/public",
    "http://localhost",
    "http://host.example/with%20space/v1",
    "http://[::1]:9000/api",
]
PATHS = [
    "leads/0b7c2a9e-54a4-4c4e-9a51-1a7c3b0f3a10/assign-workflow",
    "leads/0B7C2A9E-54A4-4C4E-9A51-1A7C3B0F3A10",
    "workflows",
]


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("path", PATHS)
def test_joined_url_is_the_parsed_url(base: str, path: str) -> None:
    joiner = _UrlJoiner(base)
    joined = joiner(path)
    parsed = httpx.URL(f"{base}/{path}")
    assert joiner._fast  # httpx's internals are as the joiner expects
    assert joined == parsed
    assert joined.raw_path == parsed.raw_path
    assert joined.netloc == parsed.netloc
    assert joined.scheme == parsed.scheme


@pytest.mark.parametrize(
    "path", ["leads/a b/assign-workflow", "leads/x?y=1", "leads/x#f", "leads/%41"]
)
def test_paths_with_reserved_characters_are_parsed(path: str) -> None:
    joiner = _UrlJoiner("http://127.0.0.1:8080/api")
    assert joiner(path) == httpx.URL(f"http://127.0.0.1:8080/api/{path}")


def test_a_base_with_a_query_is_parsed_every_time() -> None:
    joiner = _UrlJoiner("http://127.0.0.1:8080/api?tenant=1")
    assert not joiner._fast
    assert joiner("leads/x") == httpx.URL("http://127.0.0.1:8080/api?tenant=1/leads/x")
