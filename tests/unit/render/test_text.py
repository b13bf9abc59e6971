"""printable(): untrusted text made safe for a terminal or a DOT file."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from loopscope.render.text import printable


def test_escape_sequences_become_visible_text():
    assert printable("\x1b[2J\x1b[31mX") == "\\x1b[2J\\x1b[31mX"
    assert printable("\x1b]0;pwned\x07") == "\\x1b]0;pwned\\x07"


def test_tab_newline_cr_use_short_escapes():
    assert printable("a\tb\nc\rd") == "a\\tb\\nc\\rd"


def test_del_c1_bidi_and_separators_are_escaped():
    assert printable("\x7f") == "\\x7f"
    assert printable("\x9b31m") == "\\x9b31m"  # the 8-bit CSI
    assert printable("evil\u202etxt") == "evil\\u202etxt"  # right-to-left override
    assert printable("a\u2028b") == "a\\u2028b"
    assert printable("\udcff") == "\\udcff"  # a surrogateescape'd byte


def test_normal_text_and_unicode_are_kept():
    for text in ("nginx[10,11]", "127.0.0.1:8080", "[::1]:443", "café", "名前", "🙂", "a\\x1b", ""):
        assert printable(text) == text


@given(st.text())
def test_output_is_always_printable(text: str):
    out = printable(text)
    assert out.isprintable()
    assert all(unicodedata.category(ch)[0] != "C" for ch in out)
    if text.isprintable():
        assert out == text
