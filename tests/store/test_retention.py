"""Retention (DESIGN 5.4): finished events are pruned after ``store.retention``, in batches."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import ConfigError
from tests.support import build_config, config_dict, payments_source

DAY = 86400.0


# -- config --------------------------------------------------------------------------------------


def _config(retention: object | None, **source: Any):
    data = config_dict("http://127.0.0.1:8000/hook", store_url="sqlite:///x.db")
    if retention is not None:
        data["store"]["retention"] = retention
    data["sources"]["payments"] = payments_source(**source)
    return build_config(data)


def test_retention_defaults_to_30_days_and_takes_a_duration():
    assert _config(None).store.retention == 30 * DAY
    assert _config("7d").store.retention == 7 * DAY
    assert "retention=604800.0" in repr(_config("7d").store)


@pytest.mark.parametrize("retention", ["71h", "0s"])
def test_retention_shorter_than_a_dedupe_window_is_refused(retention: str):
    with pytest.raises(ConfigError) as info:
        _config(retention)  # the payments source dedupes for 72h
    [problem] = info.value.problems
    assert problem.key == "store.retention"


def test_retention_is_checked_against_the_longest_window():
    data = config_dict("http://127.0.0.1:8000/hook", store_url="sqlite:///x.db")
    data["store"]["retention"] = "4d"
    data["sources"]["payments"] = payments_source()
    data["sources"]["other"] = payments_source(
        path="/hooks/other", dedupe={"key": "header:webhook-id", "window": "5d"}
    )
    with pytest.raises(ConfigError) as info:
        build_config(data)
    [problem] = info.value.problems
    assert problem.key == "store.retention"
    assert "sources.other.dedupe.window" in problem.message
    data["store"]["retention"] = "5d"
    assert build_config(data).store.retention == 5 * DAY


def test_retention_must_be_a_duration():
    with pytest.raises(ConfigError) as info:
        _config("soon")
    assert [p.key for p in info.value.problems] == ["store.retention"]
