"""`dashboards.macros`: the plugin's macros, and template variables that cannot inject SQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboards.macros import MacroError, TimeRange, expand, quote_literal, variable_names

TR = TimeRange(datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 6, 12, tzinfo=UTC), 300)
FROM_S, TO_S = 1767571200, 1767700800


def unquote(literal: str) -> str:
    """Decode a single-quoted ClickHouse literal the way ClickHouse does (backslash escapes)."""
    assert literal[0] == literal[-1] == "'"
    out, i, body = [], 0, literal[1:-1]
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            out.append(body[i + 1])
            i += 2
            continue
        assert ch != "'", f"unescaped quote in {literal!r}"
        out.append(ch)
        i += 1
    return "".join(out)


@pytest.mark.parametrize(("sql", "want"), [
    ("$__timeFilter(ts)", f"ts >= toDateTime({FROM_S}) AND ts <= toDateTime({TO_S})"),
    ("$__timeFilter_ms(a.ts)",
     f"a.ts >= fromUnixTimestamp64Milli({FROM_S}000) AND a.ts <= fromUnixTimestamp64Milli({TO_S}000)"),
    ("$__dateFilter(day)", "day >= toDate('2026-01-05') AND day <= toDate('2026-01-06')"),
    ("$__timeInterval(ts)", "toStartOfInterval(toDateTime(ts), INTERVAL 300 second)"),
    ("$__timeInterval_ms(ts)", "toStartOfInterval(toDateTime64(ts, 3), INTERVAL 300000 millisecond)"),
    ("$__fromTime, $__toTime", f"toDateTime({FROM_S}), toDateTime({TO_S})"),
    ("$__fromTime_ms", f"fromUnixTimestamp64Milli({FROM_S}000)"),
    ("count() / $__interval_s", "count() / 300"),
])
def test_macros_expand_like_the_plugin(sql: str, want: str) -> None:
    """Each macro becomes the SQL the Grafana ClickHouse plugin would send."""
    assert expand(sql, TR) == want


@pytest.mark.parametrize(("sql", "message"), [
    ("$__nope(ts)", "unknown macro"),
    ("$__timeFilter()", "expects 1 argument"),
    ("$__timeFilter(a, b)", "expects 1 argument"),
    ("$__timeFilter(ts) OR 1=1 --)", None),
    ("$__timeFilter(ts; DROP TABLE x)", "not a column name"),
    ("$__fromTime(ts)", "takes no arguments"),
])
def test_bad_macros_are_refused(sql: str, message: str | None) -> None:
    """Unknown macros, wrong arity and non-column arguments are errors, not SQL."""
    if message is None:  # the parenthesis ends the argument: what follows is the panel's own SQL
        assert expand(sql, TR).startswith("ts >= toDateTime(")
        return
    with pytest.raises(MacroError, match=message):
        expand(sql, TR)


@pytest.mark.parametrize("sql", [
    "WHERE t = $tenant", "WHERE t = ${tenant}", "WHERE t = [[tenant]]", "WHERE t = ${tenant:raw}",
    "WHERE t IN (${tenant:csv})",
])
def test_unquoted_variables_are_refused(sql: str) -> None:
    """Formats that paste the value as-is are rejected, even with a harmless value."""
    with pytest.raises(MacroError, match="quoting format"):
        expand(sql, TR, {"tenant": "acme"})


def test_quoted_variables_expand_single_and_multi() -> None:
    """`singlequote` and `sqlstring` give one literal per value, comma-separated; empty gives NULL."""
    assert expand("t = ${tenant:singlequote}", TR, {"tenant": "acme"}) == "t = 'acme'"
    assert expand("t IN (${tenant:sqlstring})", TR, {"tenant": ["a", "b"]}) == "t IN ('a', 'b')"
    assert expand("t IN (${tenant:singlequote})", TR, {"tenant": []}) == "t IN (NULL)"


def test_missing_variable_is_an_error() -> None:
    """A variable without a value is reported by name."""
    with pytest.raises(MacroError, match="'tenant'"):
        expand("t = ${tenant:singlequote}", TR, {})


@pytest.mark.parametrize("value", ["x' OR 1=1 --", "x\\' OR 1=1 --", "a\\", "'; DROP TABLE requests; --", "$tenant"])
def test_injection_attempts_stay_inside_the_literal(value: str) -> None:
    """The expanded SQL holds exactly one literal that decodes back to the value."""
    sql = expand("SELECT ${v:singlequote}", TR, {"v": value})
    literal = sql.removeprefix("SELECT ")
    assert unquote(literal) == value


@given(st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=40))
def test_quote_literal_round_trips_any_text(value: str) -> None:
    """Whatever the text, the literal has no unescaped quote and decodes to the same text."""
    assert unquote(quote_literal(value)) == value


def test_nul_and_non_text_values_are_refused() -> None:
    """NUL bytes and non-strings never reach the SQL."""
    with pytest.raises(MacroError):
        quote_literal("a\x00b")
    with pytest.raises(MacroError):
        quote_literal(3)  # type: ignore[arg-type]


def test_variable_names_finds_every_syntax() -> None:
    """All of $x, ${x}, ${x:fmt} and [[x]] are found; macros are not variables."""
    assert variable_names("$a ${b} ${c:singlequote} [[d]] $__timeFilter(ts)") == {"a", "b", "c", "d"}


def test_time_range_checks_and_picks_an_interval() -> None:
    """Naive or reversed ranges are refused; `around` picks a round interval for ~200 points."""
    with pytest.raises(MacroError):
        TimeRange(datetime(2026, 1, 2), datetime(2026, 1, 3), 60)
    with pytest.raises(MacroError):
        TimeRange(TR.end, TR.start, 60)
    two_days = TimeRange.around(datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 7, tzinfo=UTC))
    assert two_days.interval_s == 900
    assert re.fullmatch(r"\d+", expand("$__interval_s", two_days))
