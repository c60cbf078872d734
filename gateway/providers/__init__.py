"""Provider plugin interface: one signature scheme per provider, pure and clock-injected.

Providers live in ``plugins/`` (shipped as ``gateway.plugins``), in directories listed under
``plugins.paths``, or in third-party packages registering the ``webhook_gateway.providers``
entry-point group.
"""

from gateway.errors import VerificationError
from gateway.providers.base import (
    BaseProvider,
    OptionError,
    Provider,
    Secret,
    check_timestamp,
    lowered,
)

__all__ = [
    "BaseProvider",
    "OptionError",
    "Provider",
    "Secret",
    "VerificationError",
    "check_timestamp",
    "lowered",
]
