from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity.calls import (
    DEFAULT_RULES,
    REASONS,
    Rules,
    from_mapping,
    from_params,
    parse_form,
    parse_km_line,
    parse_query,
    validate,
)
from identity.errors import ConfigurationError

LONG = "x" * 256


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("/x?_k=K&_p=bob", "unknown_call"),
        ("/e?_p=bob&_n=Paid", "missing_key"),
        ("/e?_k=&_p=bob&_n=Paid", "missing_key"),
        ("/e?_k=K&_n=Paid", "missing_person"),
        ("/e?_k=K&_p=&_n=Paid", "missing_person"),
        (f"/e?_k=K&_p={LONG}&_n=Paid", "person_too_long"),
        ("/e?_k=K&_p=bob", "missing_event_name"),
        ("/e?_k=K&_p=bob&_n=", "missing_event_name"),
        (f"/e?_k=K&_p=bob&_n={LONG}", "name_too_long"),
        (f"/e?_k=K&_p=bob&_n=Paid&{LONG}=1", "name_too_long"),
        (f"/s?_k=K&_p=bob&{LONG}=1", "name_too_long"),
        ("/a?_k=K&_p=bob", "missing_alias"),
        ("/a?_k=K&_p=bob&_n=", "missing_alias"),
        (f"/a?_k=K&_p=bob&_n={LONG}", "alias_too_long"),
        ("/e?_k=K&_p=bob&_n=Paid&_t=yesterday&_d=1", "bad_timestamp"),
        ("/s?_k=K&_p=bob&_t=&_d=1", "bad_timestamp"),
        ("/s?_k=K&_p=bob&=1", "missing_property_name"),
        ("/s?_k=K&_p=bob&plan=" + "v" * 8193, "value_too_long"),
        ("/e?_k=K&_p=%ff&_n=Paid", "bad_encoding"),
        ("/a?_k=K&_p=bob&_n=undefined", "blocked_identity"),
        ("/a?_k=K&_p=%22NULL%22&_n=bob", "blocked_identity"),
        ("/a?_k=K&_p=bob&_n=00000000-0000-0000-0000-000000000000", "blocked_identity"),
        ("/a?_k=K&_p=bob&_n=000", "blocked_identity"),
        ("/a?_k=K&_p=bob&_n=+[object+Object]+", "blocked_identity"),
    ],
)
def test_each_quarantine_reason(text: str, reason: str) -> None:
    call = parse_query(text, received=10)
    assert call.reason == reason
    assert call.raw == text
    assert not call.ok
    assert call.properties == ()


def test_every_reason_is_tested_or_listed() -> None:
    spec = {
        "unknown_call",
        "missing_key",
        "unknown_key",
        "missing_person",
        "person_too_long",
        "missing_event_name",
        "name_too_long",
        "missing_alias",
        "alias_too_long",
        "bad_timestamp",
        "value_too_long",
        "bad_encoding",
        "blocked_identity",
    }
    assert spec <= set(REASONS)


def test_unknown_key_with_an_allow_list() -> None:
    rules = Rules(allowed_keys=frozenset({"good"}))
    assert parse_query("/s?_k=bad&_p=bob", rules=rules, received=1).reason == "unknown_key"
    assert parse_query("/s?_k=good&_p=bob", rules=rules, received=1).ok


def test_value_length_is_configurable() -> None:
    rules = Rules(max_value_length=3)
    assert parse_query("/s?_k=K&_p=b&x=1234", rules=rules, received=1).reason == "value_too_long"
    assert parse_query("/s?_k=K&_p=b&x=1234", received=1).ok
    with pytest.raises(ConfigurationError):
        Rules(max_value_length=0)
    with pytest.raises(ConfigurationError):
        Rules(blocked_patterns=("(",))


def test_time_rules() -> None:
    applied = parse_query("/e?_k=K&_p=b&_n=x&_t=1262304000.75&_d=1", received=5)
    assert (applied.t, applied.td) == (1262304000, 1262304000)
    sent_only = parse_query("/e?_k=K&_p=b&_n=x&_t=1262304000", received=5)
    assert (sent_only.t, sent_only.td) == (5, 1262304000)
    d0 = parse_query("/e?_k=K&_p=b&_n=x&_t=1262304000&_d=0", received=5)
    assert (d0.t, d0.td) == (5, 1262304000)
    junk_t = parse_query("/e?_k=K&_p=b&_n=x&_t=soon", received=5)
    assert (junk_t.t, junk_t.td, junk_t.ok) == (5, 5, True)


def test_names_are_normalised_and_identities_kept_exact() -> None:
    call = parse_query("/e?_k=K&_p=+Bob+&_n=Plan%3A+Pro%2C+yearly&Item%2CName=x", received=1)
    assert call.identity == " Bob "
    assert call.name == "Plan  Pro  yearly"
    assert call.properties == (("item name", "Item Name", "x"),)


def test_repeated_parameters_keep_the_last_value() -> None:
    call = parse_query("/s?_k=K&_p=a&_p=b&Plan=1&plan=2", received=1)
    assert call.identity == "b"
    assert call.properties == (("plan", "plan", "2"),)


def test_spaces_plus_and_percent_20_and_fragment_and_prefix() -> None:
    a = parse_query("https://h.example/km/e?_k=K&_p=a&_n=Signed+Up#frag", received=1)
    b = parse_query("/e?_k=K&_p=a&_n=Signed%20Up", received=1)
    assert a.name == b.name == "Signed Up"
    assert a.kind == "e"


def test_self_alias_and_blocked_self_alias_only_make_it_known() -> None:
    assert parse_query("/a?_k=K&_p=bob&_n=bob", received=1).ok
    assert parse_query("/a?_k=K&_p=null&_n=null", received=1).ok


def test_events_and_sets_on_junk_identities_are_accepted() -> None:
    assert parse_query("/e?_k=K&_p=undefined&_n=Paid", received=1).ok
    assert parse_query("/s?_k=K&_p=None&x=1", received=1).ok


def test_block_list_is_configurable() -> None:
    rules = DEFAULT_RULES.with_blocked(add=["test-user"], remove=["guest"], patterns=[r"tmp-.*"])
    assert parse_query("/a?_k=K&_p=a&_n=TEST-USER", rules=rules, received=1).reason
    assert parse_query("/a?_k=K&_p=a&_n=guest", rules=rules, received=1).ok
    assert parse_query("/a?_k=K&_p=a&_n=tmp-7", rules=rules, received=1).reason


def test_form_body_and_query_string() -> None:
    call = parse_form(b"_p=bob&_n=Paid&_k=K", kind="e", query="_k=Q&amount=5", received=1)
    assert call.ok
    assert call.tenant == "K"
    assert call.properties == (("amount", "amount", "5"),)
    assert parse_form(b"\xff\xfe", kind="e", received=1).reason == "bad_encoding"


def test_mapping_values_become_text() -> None:
    call = from_mapping(
        {"_path": "s", "_k": "K", "_p": "bob", "n": 5, "ok": True, "f": 1.5}, received=1
    )
    assert {k: v for k, _, v in call.properties} == {"n": "5", "ok": "true", "f": "1.5"}
    assert from_mapping({"_k": "K", "_p": "bob"}, kind="s", received=1).ok


def test_km_lines() -> None:
    event = parse_km_line('{"_p":"bob","_n":"Paid","_t":1262304000,"amount":"5"}', tenant="K")
    assert (event.kind, event.t, event.tenant) == ("e", 1262304000, "K")
    alias = parse_km_line('{"_p":"bob","_p2":"bob@x.org","_t":1}', tenant="K")
    assert (alias.kind, alias.identity, alias.name) == ("a", "bob", "bob@x.org")
    prop = parse_km_line('{"_p":"bob","_t":1,"Plan":"pro"}\r\n', tenant="K")
    assert (prop.kind, prop.properties) == ("s", (("plan", "Plan", "pro"),))
    octal = parse_km_line(r'{"_p":"Ren\303\251e","_t":1,"x":"a\\b"}', tenant="K")
    assert octal.identity == "Renée"
    assert octal.properties == (("x", "x", "a\\b"),)
    assert parse_km_line("[1]", tenant="K", received=1).reason == "malformed"
    assert parse_km_line('{"_p":"bob","_t":1}', received=1).reason == "missing_key"
    bad_octal = parse_km_line(r'{"_p":"\377","_t":1}', tenant="K", received=1)
    assert bad_octal.reason == "bad_encoding"


def test_validate_applies_other_rules_and_keeps_parse_failures() -> None:
    call = parse_query("/a?_k=K&_p=bob&_n=guest", received=1)
    assert call.reason == "blocked_identity"
    assert validate(call, DEFAULT_RULES.with_blocked(remove=["guest"])).ok
    broken = parse_query("/e?_k=K&_p=%ff&_n=x", received=1)
    assert validate(broken, DEFAULT_RULES) is broken


def test_calls_are_immutable() -> None:
    call = from_params("s", [("_k", "K"), ("_p", "b")], received=1)
    with pytest.raises(AttributeError):
        call.identity = "other"  # type: ignore[misc]


def test_lone_surrogates_are_bad_encoding_not_a_crash() -> None:
    from identity import Engine

    km = parse_km_line('{"_p":"\\ud800","_n":"x","_t":1}', tenant="K", received=1)
    assert km.reason == "bad_encoding"
    mapped = from_mapping({"_path": "s", "_k": "K", "_p": "a", "x": "\ud800"}, received=1)
    assert mapped.reason == "bad_encoding"
    engine = Engine(durable=False)
    summary = engine.ingest([km, mapped, {"_path": "e", "_k": "K", "_p": "\udcff", "_n": "x"}])
    assert summary.quarantined == {"bad_encoding": 3}


# --- the decoder's ASCII fast path equals urllib's unquote ------------------------------------

_ESCAPE_PIECES = st.sampled_from(
    ["%40", "%2F", "%2f", "%2B", "%20", "%25", "%7E", "%7f", "%00", "%C3%A9", "%E2%82%AC", "%C3",
     "%A9", "%ff", "%", "%4", "%zz", "%G0", "+", "=", "a", "Z", "é", "€", "\udcff", " "]
)  # fmt: skip


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.one_of(_ESCAPE_PIECES, st.text(max_size=3)), max_size=12).map("".join))
def test_unquote_fast_path_equals_unquote(text: str) -> None:
    """`_unquote_escaped` (and its ASCII shortcut) decodes as ``unquote``, errors included."""
    from urllib.parse import unquote

    from identity.calls import _unquote_ascii, _unquote_escaped

    plus = text.replace("+", " ")
    try:
        expected: str | type[Exception] = unquote(plus, errors="strict")
    except UnicodeDecodeError:
        expected = UnicodeDecodeError
    try:
        got: str | type[Exception] = _unquote_escaped(text)
    except UnicodeDecodeError:
        got = UnicodeDecodeError
    assert got == expected
    fast = _unquote_ascii(plus)
    assert fast is None or fast == expected
    if all(part[:2] in _HEX_ASCII for part in plus.split("%")[1:]):
        assert fast == expected  # the shortcut takes every text of ASCII escapes


_HEX_ASCII = {f"{c:02X}" for c in range(128)} | {f"{c:02x}" for c in range(128)}
