"""Refactors keep behaviour exactly: today's numbers equal the recorded golden numbers (see tests/golden/)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))
import golden_numbers  # noqa: E402


@pytest.fixture(scope="module")
def golden():
    return json.loads(golden_numbers.GOLDEN_FILE.read_text(encoding="utf-8"))


def _differences(expected, actual, path=""):
    """Paths where two JSON values differ (the first few), for a readable failure."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = [f"{path}/{k}: missing" for k in expected if k not in actual]
        found += [f"{path}/{k}: unexpected" for k in actual if k not in expected]
        for key in expected:
            if key in actual:
                found += _differences(expected[key], actual[key], f"{path}/{key}")
        return found
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        found = []
        for i, (a, b) in enumerate(zip(expected, actual)):
            found += _differences(a, b, f"{path}[{i}]")
        return found
    return [] if expected == actual else [f"{path}: expected {expected!r}, got {actual!r}"]


def test_fixture_networks_compute_the_golden_numbers(golden):
    actual = json.loads(json.dumps(golden_numbers.network_numbers(golden_numbers._api())))
    assert actual == golden["networks"], "\n".join(_differences(golden["networks"], actual)[:20])


def test_digits_searches_write_the_golden_search_csv(golden):
    actual = golden_numbers.search_numbers(golden_numbers._api())
    assert actual == golden["searches"], "\n".join(_differences(golden["searches"], actual)[:20])
