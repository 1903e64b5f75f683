"""Shared fixtures: one local Spark session for the whole run (Spark tests only)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local Spark session (``local[2]``, UI off, two shuffle partitions) for every test.

    ``local_session`` turns adaptive execution and broadcast joins off in local mode (each is
    a job of its own, and on inputs this small the jobs, not the rows, take the time).
    Skipped, with the reason, only when pyspark or Java is missing.
    """
    pytest.importorskip("pyspark", reason="the Spark tests need pyspark (identity[spark])")
    if shutil.which("java") is None:
        pytest.skip("the Spark tests need Java (no java on PATH)")
    from identity.audit.engines.spark import local_session

    session = local_session("local[2]", partitions=2)
    yield session
    session.stop()
