"""Run order: the test modules that took longest last time go first, so the workers of ``make test`` finish together.

``make test`` runs the modules on two workers (``-n auto --dist loadfile --no-loadscope-reorder``): each worker
takes the next module in collection order when it runs dry. By default xdist would order the modules by their
number of tests, which puts a module of two long tests (the README tour, a training run) last, alone on one
worker while the other idles. Here each run records every module's seconds (setup + call + teardown, summed)
in pytest's cache (``.pytest_cache``, key :data:`KEY`), and the next run collects the modules slowest first
(longest-first scheduling); a module not timed yet goes first. The tests of a module keep their order, so its
module-scoped fixtures are built once as before. Without a cache (a fresh clone, ``-p no:cacheprovider``) the
order is the files' order.
"""

from __future__ import annotations

import os
from collections import defaultdict

import pytest

__all__ = ["KEY", "pytest_collection_modifyitems", "pytest_runtest_logreport", "pytest_sessionfinish"]

KEY = "eddy/module-seconds"  # {"tests/test_x.py": seconds of the last run that ran it}
_spent: defaultdict[str, float] = defaultdict(float)  # this run's seconds per module (controller only)


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _worker() -> bool:
    return bool(os.environ.get("PYTEST_XDIST_WORKER"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cache = getattr(config, "cache", None)
    seconds = cache.get(KEY, {}) if cache is not None else {}
    if not isinstance(seconds, dict) or not seconds:
        return
    first: dict[str, int] = {}  # module -> position of its first test (keeps the files' order among equals)
    for i, item in enumerate(items):
        first.setdefault(_module(item.nodeid), i)
    items.sort(key=lambda item: (-float(seconds.get(_module(item.nodeid), float("inf"))), first[_module(item.nodeid)]))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not _worker():  # the controller sees every worker's reports; a worker would count its own twice
        _spent[_module(report.nodeid)] += report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    cache = getattr(session.config, "cache", None)
    if _worker() or cache is None or not _spent:
        return
    seconds = cache.get(KEY, {})
    seconds = seconds if isinstance(seconds, dict) else {}
    seconds.update({module: round(s, 2) for module, s in _spent.items()})  # modules not run keep their figure
    cache.set(KEY, seconds)
