"""Fixtures for the provider tests: one registry of the built-ins, and a provider factory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from gateway.providers.base import BaseProvider
from gateway.providers.registry import ProviderRegistry, load_registry


@pytest.fixture(scope="module")
def registry() -> ProviderRegistry:
    """The built-in providers only (no plugin paths, no entry points)."""
    return load_registry(use_entry_points=False)


@pytest.fixture
def make(registry: ProviderRegistry) -> Callable[..., BaseProvider]:
    """Build a provider by name the way the config loader does."""

    def build(
        name: str, options: Mapping[str, Any] | None = None, tolerance: float = 300.0
    ) -> BaseProvider:
        return registry.get(name)(tolerance=tolerance, options=options or {})

    return build
