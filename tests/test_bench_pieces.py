"""``bench.pieces`` runs the store's own transactions and checks they did their work: every
accept queued, every event leased and delivered once. A loop that skipped a step would make
its figures flatter."""

from __future__ import annotations

from bench.pieces import measure


def test_every_event_is_accepted_leased_and_delivered_once():
    result = measure(events=50, batch=8, repeat=1)
    assert (result["events"], result["batch"]) == (50, 8)
    for name in ("sqlite_accept_us", "sqlite_delivery_us"):
        assert 0 < result[name]["best"] <= result[name]["median"]
