"""The terminal table style (harness.report.term): numbers, wrapping, fitting by priority."""

from __future__ import annotations

import pytest

from harness.report.term import Column, Heading, fixed, sig, table, terminal_width, wrap


def test_significant_digits_and_missing_figures() -> None:
    assert [sig(v) for v in (0.073217, 12.34, 159.4, 10606.6, 1.0, 0.0)] == [
        "0.0732", "12.3", "159", "10,607", "1.00", "0"]
    assert sig(None) is None and sig(float("nan")) is None and sig(float("inf")) == "inf"
    assert fixed(-0.04444, 4, sign=True) == "-0.0444" and fixed(0.0, 4, sign=True) == "+0.0000"
    assert fixed(None, 4) is None


def test_wrap_breaks_case_ids_between_their_parts() -> None:
    assert wrap("digits_cnn/int8-static/prune-50", 24) == ["digits_cnn/int8-static/",
                                                           "prune-50"]
    # inside a part only when the part alone is too long; inside a word only as a last resort
    assert wrap("digits_cnn/prune-channel-l2-50+ft", 16) == ["digits_cnn/", "prune-channel-",
                                                             "l2-50+ft"]
    assert wrap("abcdefghij", 4) == ["abcd", "efgh", "ij"]
    assert wrap("", 5) == [""]


COLS = [Column("case", wrap=True, priority=2), Column("status"),
        Column("host p50 (ms)", "right"), Column("size (KB)", "right", priority=3),
        Column("quality", "right", priority=1), Column("remark", priority=4)]
ROWS = [["digits_cnn/int8-static/prune-channel-l2-50", "ok", "0.0123", "50.4", "0.9844",
         "a note that takes room"],
        ["ppocr_rec/fp32/prune-0", "unsupported", None, None, None, ""]]


def test_one_style_header_rule_right_aligned_numbers_missing_as_dash() -> None:
    lines = table(COLS, ROWS, width=200).splitlines()
    assert lines[0].split() == ["case", "status", "host", "p50", "(ms)", "size", "(KB)",
                                "quality", "remark"]
    assert set(lines[1]) == {"-", " "}
    ok, bad = lines[2], lines[3]
    assert ok.index("0.0123") + len("0.0123") == lines[0].index("(ms)") + len("(ms)")
    assert bad.split() == ["ppocr_rec/fp32/prune-0", "unsupported", "-", "-", "-"]


@pytest.mark.parametrize("width", [40, 60, 80, 100, 120])
def test_fits_by_hiding_the_highest_priority_first_and_says_so(width: int) -> None:
    text = table(COLS, ROWS, width=width, hint="--wide shows them")
    assert all(len(line) <= width for line in text.splitlines())
    body, _, note = text.partition("\n(hidden to fit")
    note = " ".join(note.split())
    hidden = [c for c in COLS if c.header in note]
    assert all(c.header.split()[0] not in body for c in hidden)
    assert bool(hidden) == (width < 114) and all(not c.wrap for c in hidden)  # 114: natural
    if hidden:
        assert note.startswith(f"{width} columns:") and note.endswith("--wide shows them)")
    # given up in priority order: no shown column outranks a hidden one
    shown = [c for c in COLS if c not in hidden and not c.wrap]
    assert all(s.priority < h.priority for s in shown for h in hidden)


def test_the_case_column_wraps_only_after_lower_priority_columns_are_hidden() -> None:
    text = table(COLS, ROWS, width=80)  # remark and size hidden; the case still on one line
    assert "(hidden to fit 80 columns: size (KB), remark;" in text
    assert "digits_cnn/int8-static/prune-channel-l2-50" in text
    narrow = table(COLS, ROWS, width=50)
    assert max(len(line) for line in narrow.splitlines()) <= 50
    assert [line.split()[0] for line in narrow.splitlines()[3:6]] == [
        "digits_cnn/", "int8-static/prune-", "channel-l2-50"]


def test_wide_shows_everything_and_headings_group_rows() -> None:
    text = table(COLS, [Heading("device: phone"), *ROWS], width=40, wide=True)
    assert "hidden" not in text and "a note that takes room" in text
    assert text.splitlines()[2] == "device: phone"


def test_control_characters_cannot_break_a_row() -> None:
    text = table([Column("name"), Column("x", "right")], [["evil\nname\x1b[2J", "1"]], width=80)
    assert len(text.splitlines()) == 3 and "\x1b" not in text


def test_width_comes_from_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "77")
    assert terminal_width() == 77 and terminal_width(50) == 50


def test_one_long_case_id_among_many_wraps_rather_than_hide_a_column() -> None:
    cols = [Column("case", wrap=True, priority=2), Column("size (KB)", "right", priority=3)]
    rows = [[f"w/fp32/prune-{i}", "1.00"] for i in range(19)]
    rows.append(["digits_cnn/torch-int8-dynamic/prune-channel-l2-50+ft", "2.00"])
    text = table(cols, rows, width=40)
    assert "hidden" not in text and "size" in text.splitlines()[0]
    assert "digits_cnn/torch-int8-dynamic/" in text and max(map(len, text.splitlines())) <= 40
    # alone (or one in two), the long id is the column's width: the size column goes first
    assert "hidden to fit 40 columns: size (KB)" in table(cols, rows[-2:], width=40)
