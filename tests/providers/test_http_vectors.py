"""Every shared vector gets its expected verdict through the HTTP path, not only the API."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.providers.test_vectors import ALL, _id


@pytest.mark.parametrize("vector", ALL, ids=[_id(i, v) for i, v in enumerate(ALL)])
async def test_vector_through_the_gateway(make_gateway, marketplace, vector: dict[str, Any]):
    source = {
        "path": "/hooks/vector",
        "provider": vector["provider"],
        "secrets": vector["secrets"],
        # The vectors are about signatures: dedupe on the body so no extractor can refuse one.
        "dedupe": {"key": "sha256"},
        "routes": [{"destination": "marketplace"}],
    }
    client, config = await make_gateway(sources={"vector": source}, clock=lambda: vector["now"])
    response = await client.post(
        "/hooks/vector", data=vector["body"].encode(), headers=vector["headers"]
    )
    payload = json.loads(await response.read())
    if vector["valid"]:
        # 202, or what the provider's senders count as success (Rafiki: 200 only).
        expected = 200 if vector["provider"] == "rafiki" else 202
        assert response.status == expected == config.sources["vector"].ack_status, payload
        assert payload["status"] == "queued"
    else:
        assert response.status == 401, payload
        assert payload["error"] == "invalid_signature"
