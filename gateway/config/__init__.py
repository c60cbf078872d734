"""Config: YAML parsed once into frozen, typed objects (design.md 6)."""

from gateway.config.loader import load_config, load_config_text
from gateway.config.model import (
    AdminConfig,
    Config,
    DedupeConfig,
    DestinationConfig,
    HostPort,
    PluginsConfig,
    RateLimitConfig,
    RouteConfig,
    ServerConfig,
    SourceConfig,
    StoreConfig,
)

__all__ = [
    "AdminConfig",
    "Config",
    "DedupeConfig",
    "DestinationConfig",
    "HostPort",
    "PluginsConfig",
    "RateLimitConfig",
    "RouteConfig",
    "ServerConfig",
    "SourceConfig",
    "StoreConfig",
    "load_config",
    "load_config_text",
]
