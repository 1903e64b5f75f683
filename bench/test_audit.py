"""The audit benchmark runs end to end on a small workload (timings disabled in CI)."""

from __future__ import annotations

from pathlib import Path

from bench import audit


def test_the_audit_bench_measures_every_command_against_check(tmp_path: Path) -> None:
    result = audit.measure(2000, 1, True, str(tmp_path))
    assert set(result["figures"]) == {
        "identity check (reference)",
        "audit --db",
        "audit --db --html",
        "audit FILE",
        "audit FILE --html",
    }
    assert result["identities"] > 0
    table = audit.text(result)
    assert "/ check (CPU)" in table
    assert "RSS / identity" in table
