"""The inspection benchmark runs end to end on a small database (timings disabled in CI)."""

from __future__ import annotations

from bench import inspection


def test_inspect_times_every_question() -> None:
    result = inspection.run(3000, repeat=1)
    assert result.person_size > 1
    assert set(result.timings) == {
        "identity check (reference)",
        "person_graph, largest person",
        "explain, its smallest and largest identity",
        "risky, the whole tenant",
        "what-if, drop its busiest identity",
    }
    assert "/ check" in result.text()
