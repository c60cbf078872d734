"""Every shared vector (signed by independent libraries) gets its expected verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import VerificationError
from gateway.providers.base import Secret

#: Signed by independent libraries; where each comes from is in vectors/README.md.
VECTORS = Path(__file__).resolve().parent / "vectors" / "signatures.json"


def _load() -> list[Any]:
    vectors: list[Any] = json.loads(VECTORS.read_text(encoding="utf-8"))["vectors"]
    return vectors


def _id(index: int, vector: dict[str, Any]) -> str:
    why = "-".join(vector["why"].split())
    return f"{vector['provider']}-{why}-{index}"


ALL = _load()


def test_vectors_cover_every_signed_builtin(registry) -> None:
    providers = {vector["provider"] for vector in ALL}
    assert providers <= set(registry.names())
    assert {"standard-webhooks", "stripe", "github", "shopify", "slack", "rafiki"} <= providers
    assert any(v["valid"] for v in ALL)
    assert any(not v["valid"] for v in ALL)


@pytest.mark.parametrize("vector", ALL, ids=[_id(i, v) for i, v in enumerate(ALL)])
def test_vector(make, vector: dict[str, Any]) -> None:
    provider = make(vector["provider"], vector.get("options"), vector.get("tolerance", 300.0))
    body = vector["body"].encode("utf-8")
    secrets = [Secret(s) for s in vector["secrets"]]
    if vector["valid"]:
        provider.verify(body, vector["headers"], secrets, float(vector["now"]))
    else:
        with pytest.raises(VerificationError) as info:
            provider.verify(body, vector["headers"], secrets, float(vector["now"]))
        assert info.value.status == 401
        assert info.value.code == "invalid_signature"
