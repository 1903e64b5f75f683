"""Tests of the benchmark workload generator (`bench.workloads`) and its CLI."""

from __future__ import annotations

import doctest
import gzip
import io
import itertools
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import parse_qsl, quote_plus, urlencode

import pytest

from bench import workloads
from bench.__main__ import COMMANDS, Command, build_parser, main
from bench.workloads import JUNK_IDS, SHAPES, Call

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SIZE = 2000
SAMPLE_SEED = 7
#: Shapes that send junk identities on purpose (some empty: quarantined as missing_person).
JUNK_SHAPES = {"junk", "mixed"}
CORE_JUNK = ("undefined", "null", "None", "0", "")


@pytest.fixture(scope="module")
def samples() -> dict[str, list[Call]]:
    return {name: list(shape(SAMPLE_SIZE, SAMPLE_SEED)) for name, shape in SHAPES.items()}


def props(call: Call) -> dict[str, str]:
    return {k: v for k, v in call.items() if k not in workloads.RESERVED}


def components(calls: list[Call]) -> list[int]:
    """Return the person sizes (identities joined by aliases, per tenant), largest first."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(x: tuple[str, str]) -> tuple[str, str]:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for call in calls:
        a = find((call["_k"], call["_p"]))
        if call["_path"] == "a":
            b = find((call["_k"], call["_n"]))
            parent[a] = b
    return sorted(Counter(find(x) for x in list(parent)).values(), reverse=True)


def alias_partners(calls: list[Call]) -> dict[str, set[str]]:
    partners: dict[str, set[str]] = defaultdict(set)
    for call in calls:
        if call["_path"] == "a":
            partners[call["_p"]].add(call["_n"])
            partners[call["_n"]].add(call["_p"])
    return partners


# --- every shape -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_yields_exactly_n_calls(name: str) -> None:
    for n_calls in (0, 1, 5, 1234):
        assert sum(1 for _ in SHAPES[name](n_calls, 3)) == n_calls
    # A trillion calls: only possible if nothing is built up front.
    assert len(list(itertools.islice(SHAPES[name](10**12, 0), 50))) == 50


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_deterministic_for_a_seed(name: str) -> None:
    calls = list(SHAPES[name](1000, 11))
    assert list(SHAPES[name](1000, 11)) == calls
    assert list(SHAPES[name](1000, 12)) != calls


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_call_is_valid(name: str, samples: dict[str, list[Call]]) -> None:
    tenants = set(workloads.tenant_names(workloads.default_tenants(name)))
    for call in samples[name]:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in call.items()), call
        assert next(iter(call)) == "_path"
        assert call["_path"] in {"e", "s", "a"}
        assert call["_k"] in tenants
        identities = [call["_p"], call["_n"]] if call["_path"] == "a" else [call["_p"]]
        for identity in identities:
            assert len(identity) <= 255
            if not identity:
                assert name in JUNK_SHAPES, call
        if call["_path"] == "e":
            assert 0 < len(call["_n"]) <= 255
        if call["_path"] == "s":
            assert "_n" not in call
            assert props(call), call
        t = float(call["_t"])
        assert workloads.EPOCH - 2 * 86_400 <= t < workloads.EPOCH + 400 * 86_400
        assert call.get("_d", "1") == "1"
        for key, value in props(call).items():
            assert not key.startswith("_")
            assert 0 < len(key) <= 255
            assert len(value) <= 8192


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_tenants(name: str) -> None:
    calls = list(SHAPES[name](1000, 1, tenants=4))
    keys = Counter(call["_k"] for call in calls)
    assert set(keys) <= set(workloads.tenant_names(4))
    assert len(keys) >= 2
    assert keys.most_common(1)[0][0] == "tenant-1"  # tenant i weighs 1/i


def test_default_tenants() -> None:
    assert workloads.default_tenants("mixed") == 3
    assert workloads.default_tenants("issue2") == 1
    assert {c["_k"] for c in workloads.generate("mixed", 3000)} == {
        "tenant-1",
        "tenant-2",
        "tenant-3",
    }


def test_timestamps(samples: dict[str, list[Call]]) -> None:
    calls = samples["mixed"]
    stamps = [c["_t"] for c in calls]
    assert any("." in t for t in stamps)
    assert 0.05 < sum("_d" in c for c in calls) / len(calls) < 0.2
    live = [int(float(c["_t"])) for c in calls if "_d" not in c]
    rising = sum(a <= b for a, b in itertools.pairwise(live))
    assert rising / (len(live) - 1) > 0.9  # increasing-ish: retries resend older stamps
    assert int(float(stamps[0])) >= workloads.EPOCH


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_calls"):
        workloads.mixed(-1)
    with pytest.raises(ValueError, match="tenants"):
        workloads.issue2(10, tenants=0)
    with pytest.raises(ValueError, match="unknown shape"):
        workloads.generate("nope")


# --- what each shape is for ------------------------------------------------------------------


def test_anonymous_identify(samples: dict[str, list[Call]]) -> None:
    calls = samples["anonymous_identify"]
    anon = {c["_p"] for c in calls if c["_path"] == "e" and c["_n"] == "Visited Site"}
    assert all(len(a) == 28 and a != a.lower() and a != a.upper() for a in anon)
    aliased = {c["_p"] for c in calls if c["_path"] == "a"}
    assert aliased <= anon
    assert 0.3 < len(aliased) / len(anon) < 0.8  # some visitors never sign up
    named = {c["_n"] for c in calls if c["_path"] == "a"}
    assert any("@" in n for n in named)
    assert any("@" not in n for n in named)


def test_multi_device(samples: dict[str, list[Call]]) -> None:
    partners = alias_partners(samples["multi_device"])
    devices = [len(p) for p in partners.values() if len(p) >= 2]  # users, with their devices
    assert len(devices) >= 20
    assert max(devices) >= 3
    assert max(components(samples["multi_device"])) <= 9


def test_email_change(samples: dict[str, list[Call]]) -> None:
    emails = [
        (c["_p"], c["_n"])
        for c in samples["email_change"]
        if c["_path"] == "a" and "@" in c["_p"] and "@" in c["_n"]
    ]
    assert len(emails) > 50
    degree = Counter(itertools.chain.from_iterable(emails))
    assert any(d == 2 for d in degree.values())  # changed twice: old -> mid -> new


def test_shared_device(samples: dict[str, list[Call]]) -> None:
    partners = alias_partners(samples["shared_device"])
    hubs = [p for p in partners.values() if len(p) >= 20]
    assert 3 <= len(hubs) <= 6
    assert components(samples["shared_device"])[0] >= 50


def test_long_chain() -> None:
    calls = list(workloads.long_chain(5000, 0, tenants=2))
    for tenant in ("tenant-1", "tenant-2"):
        links = [c for c in calls if c["_path"] == "a" and c["_k"] == tenant]
        ends = [sorted(int(x[1:]) for x in (c["_p"], c["_n"])) for c in links]
        assert all(hi == lo + 1 for lo, hi in ends)
        assert [lo for lo, _ in ends] == list(range(len(links)))  # a0-a1, a1-a2, ... in order
    assert len(components(calls)) == 2


def test_power_law() -> None:
    sizes = components(list(workloads.power_law(20_000, 0)))
    median = sizes[len(sizes) // 2]
    assert median <= 2
    assert sizes[0] >= 100 * median
    assert sum(s >= 50 for s in sizes) <= len(sizes) // 20  # only a few giants


def test_junk(samples: dict[str, list[Call]]) -> None:
    calls = samples["junk"]
    tracked = {c["_p"] for c in calls}
    assert set(CORE_JUNK) <= tracked
    junk_links = [c for c in calls if c["_path"] == "a" and {c["_p"], c["_n"]} & set(JUNK_IDS)]
    assert len(junk_links) > 100
    assert any("" in (c["_p"], c["_n"]) for c in junk_links)


def test_retries(samples: dict[str, list[Call]]) -> None:
    calls = samples["retries"]
    copies = Counter(tuple(c.items()) for c in calls)
    repeated = [dict(k) for k, n in copies.items() if n > 1]
    assert len(repeated) > SAMPLE_SIZE * 0.1
    assert any("_d" not in c for c in repeated)  # JS retries: same _t, no _d
    assert any("_d" in c and c["_path"] == "e" for c in repeated)  # exact duplicate events
    seconds = Counter(
        (c["_p"], c.get("_n"), c["_t"].partition(".")[0], tuple(props(c).items())) for c in calls
    )
    assert sum(seconds.values()) - len(seconds) > sum(copies.values()) - len(copies)


def test_mixed() -> None:
    calls = list(workloads.mixed(10_000, 1))
    assert {c["_k"] for c in calls} == {"tenant-1", "tenant-2", "tenant-3"}
    assert {c["_p"] for c in calls} & set(JUNK_IDS)
    assert any(c.get("_n") in workloads.ODD_EVENTS for c in calls)
    assert len(calls) > len({tuple(c.items()) for c in calls})  # retries
    assert Counter(c["_path"] for c in calls).keys() == {"e", "s", "a"}
    assert components(calls)[0] >= 20


def test_issue2_mix() -> None:
    n = 20_000
    calls = list(workloads.issue2(n, 5))
    paths = Counter(c["_path"] for c in calls)
    assert paths["a"] / n == pytest.approx(0.4, abs=0.005)
    assert paths["e"] / n == pytest.approx(0.4, abs=0.005)
    assert paths["s"] / n == pytest.approx(0.2, abs=0.005)
    for call in calls:
        assert len(props(call)) == (0 if call["_path"] == "a" else 1)
        if call["_path"] == "a":
            assert call["_p"] != call["_n"]
    identities = {c["_p"] for c in calls} | {c["_n"] for c in calls if c["_path"] == "a"}
    assert len(identities) / n == pytest.approx(0.8, abs=0.03)
    assert len({c["_p"] for c in calls if c["_path"] == "a"} & {c["_p"] for c in calls}) > 0


# --- writers ---------------------------------------------------------------------------------


def test_to_url_example() -> None:
    call = {"_path": "e", "_k": "tenant-1", "_p": "bob", "_n": "Signed Up", "plan": "pro"}
    assert workloads.to_url(call) == "/e?_k=tenant-1&_p=bob&_n=Signed+Up&plan=pro"


def test_quote_matches_stdlib() -> None:
    texts = ["", "plain", "a b", "a+b=c&d", "100% off", "bob@bob.com", "São Paulo", "東京", "🙂"]
    texts += ["~_.-", "".join(map(chr, range(1, 300)))]
    for text in texts:
        call = {"_path": "s", "_k": "k", "_p": text, text or "x": text}
        expected = urlencode([(k, v) for k, v in call.items() if k != "_path"])
        assert workloads.to_url(call) == "/s?" + expected
        assert workloads._quote(text) == quote_plus(text)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_url_round_trip(name: str, samples: dict[str, list[Call]]) -> None:
    for call in samples[name]:
        line = workloads.to_url(call)
        path, _, query = line.partition("?")
        assert path == "/" + call["_path"]
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        assert pairs == [(k, v) for k, v in call.items() if k != "_path"]
        assert "\n" not in line
        assert " " not in line


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_km_round_trip(name: str, samples: dict[str, list[Call]]) -> None:
    for call in samples[name]:
        line = workloads.to_km(call)
        obj = json.loads(line)
        assert "\n" not in line
        assert "_k" not in obj
        assert "_d" not in obj
        assert obj["_p"] == call["_p"]
        assert obj["_t"] == int(float(call["_t"]))
        assert isinstance(obj["_t"], int)
        extra = {k: v for k, v in obj.items() if k not in {"_p", "_p2", "_n", "_t"}}
        assert extra == props(call)
        if call["_path"] == "e":
            assert list(obj)[:3] == ["_p", "_t", "_n"]
            assert obj["_n"] == call["_n"]
        elif call["_path"] == "a":
            assert list(obj) == ["_p", "_p2", "_t"]
            assert obj["_p2"] == call["_n"]
        else:
            assert "_n" not in obj
            assert "_p2" not in obj
        assert json.loads(workloads.to_km(call, include_key=True))["_k"] == call["_k"]


def test_write_to_open_file(samples: dict[str, list[Call]]) -> None:
    out = io.StringIO()
    calls = samples["mixed"]
    assert workloads.write(iter(calls), out) == len(calls)
    assert out.getvalue().splitlines() == [workloads.to_url(c) for c in calls]
    out = io.StringIO()
    assert workloads.write(calls, out, fmt="km", include_key=True) == len(calls)
    assert [json.loads(line)["_k"] for line in out.getvalue().splitlines()] == [
        c["_k"] for c in calls
    ]
    assert workloads.write([], io.StringIO()) == 0


def test_write_gzip_is_reproducible(tmp_path: Path) -> None:
    first, second = tmp_path / "a.km.gz", tmp_path / "b.km.gz"
    assert workloads.write(workloads.junk(1000, 2), first, fmt="km") == 1000
    assert workloads.write(workloads.junk(1000, 2), str(second), fmt="km") == 1000
    assert first.read_bytes() == second.read_bytes()
    with gzip.open(first, "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    assert lines == [workloads.to_km(c) for c in workloads.junk(1000, 2)]


def test_write_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown format"):
        workloads.write([], tmp_path / "x", fmt="csv")


def test_doctests() -> None:
    assert doctest.testmod(workloads).failed == 0


# --- CLI -------------------------------------------------------------------------------------


def test_cli_writes_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "issue2.url"
    assert main(["generate", "--calls", "500", "--shape", "issue2", "-o", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines == [workloads.to_url(c) for c in workloads.issue2(500, 0)]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert "500 calls" in err[0]
    assert "a=200" in err[0]


def test_cli_km_gzip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mixed.json.gz"
    argv = ["generate", "-n", "1e3", "--seed", "4", "--tenants", "2", "-f", "km"]
    assert main([*argv, "--include-key", "-o", str(out)]) == 0
    with gzip.open(out, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    assert len(rows) == 1000
    assert {r["_k"] for r in rows} == {"tenant-1", "tenant-2"}
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_cli_stdout_in_a_subprocess() -> None:
    env = {**os.environ, "PYTHONHASHSEED": "123"}  # output must not depend on str hashing
    argv = ["generate", "--calls", "300", "--shape", "mixed", "--seed", "5", "-o", "-"]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=True,
        timeout=60,
    )
    assert done.stdout.splitlines() == [workloads.to_url(c) for c in workloads.mixed(300, 5)]
    assert len(done.stderr.splitlines()) == 1


def test_cli_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        [],
        ["generate"],
        ["generate", "--calls", "x"],
        ["generate", "--calls", "-5"],
        ["generate", "--calls", "10", "--shape", "nope"],
        ["generate", "--calls", "10", "--tenants", "0"],
        ["generate", "--calls", "10", "--format", "csv"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2, argv
    capsys.readouterr()


def test_cli_accepts_new_commands() -> None:
    commands = {**COMMANDS, "report": Command("stub", lambda parser: None, lambda args: 0)}
    assert build_parser(commands).parse_args(["report"]).command == "report"
    assert "generate" in COMMANDS
