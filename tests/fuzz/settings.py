"""One hypothesis profile for every property: derandomized (the same examples on every run, so
a failure in CI reproduces on a laptop), no example database, no per-example deadline (a loaded
CI machine must not turn slowness into a failure), and a bounded example count so the whole
set runs in seconds under ``make test``. ``make soak`` (``WEBHOOK_GATEWAY_SOAK=1``) runs ten
times as many examples."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings

from tests.support import SOAK


def fuzz(examples: int) -> settings:
    """Settings for a property worth ``examples`` examples in ``make test``."""
    return settings(
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
        derandomize=True,
        database=None,
        deadline=None,
        max_examples=examples * 10 if SOAK else examples,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=False,
    )
