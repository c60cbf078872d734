"""The typed state of the gateway's aiohttp applications (``web.AppKey``), and the runtime.

Kept apart from the app factory (``gateway.app``) so that what reads the state (the admin
application, the server) does not depend on what builds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.config.model import Config
from gateway.delivery.client import DeliveryClient
from gateway.metrics import Metrics
from gateway.ratelimit.limiter import Limiter
from gateway.reconcile.runner import Reconciler
from gateway.store.protocols import Store
from gateway.store.retention import Pruner

if TYPE_CHECKING:  # the ingress reads this state; this module must not load it
    from gateway.ingress.handler import Ingress


@dataclass
class Runtime:
    """Everything that changes on a config reload, swapped as one reference."""

    config: Config
    ingress: Ingress | None = None
    #: Set when ingress accepts or the admin API replays: local workers lease at once.
    wake: asyncio.Event = field(default_factory=asyncio.Event)


Clock = Callable[[], float]

#: The config the process started with: server and store settings, which reloads do not change.
CONFIG = web.AppKey("config", Config)
RUNTIME = web.AppKey("runtime", Runtime)
METRICS = web.AppKey("metrics", Metrics)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
STORE = web.AppKey("store", Store)
DELIVERY_CLIENT = web.AppKey("delivery_client", DeliveryClient)
LIMITER = web.AppKey("limiter", Limiter)
PRUNER = web.AppKey("pruner", Pruner)
RECONCILER = web.AppKey("reconciler", Reconciler)
#: On the admin application: the ingress application whose state it reads.
GATEWAY = web.AppKey("gateway", web.Application)
