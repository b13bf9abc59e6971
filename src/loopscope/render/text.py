"""Make untrusted text safe for a terminal or a DOT file (pure).

Process names (``comm``, cmdline, paths), HTTP bytes (Server headers, paths, URLs) and TLS subjects are
chosen by whoever runs the process or the server: any local user. Printed raw, ``\\x1b[2J`` clears the
admin's screen and ``\\x1b]0;...\\x07`` sets the window title. Every text loopscope prints passes through
:func:`printable` first; JSON output escapes by itself.
"""

from __future__ import annotations

__all__ = ["printable"]

_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(ch: str) -> str:
    short = _SHORT.get(ch)
    if short is not None:
        return short
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on, or that is invisible, written as an escape.

    Escaped: C0 controls (``\\x00``-``\\x1f``, tab/newline/CR as ``\\t`` ``\\n`` ``\\r``), DEL
    (``\\x7f``), C1 controls (``\\x80``-``\\x9f``, e.g. the 8-bit CSI ``\\x9b``), format characters such
    as the bidi override U+202E, line/paragraph separators, unassigned code points, surrogates (from
    ``surrogateescape``), and spaces other than U+0020. That is, what ``str.isprintable`` rejects.
    Normal unicode (accents, CJK, emoji) is kept; so is the backslash.

    Examples:
        ``"\\x1b[2J\\x1b[31mX"`` -> ``"\\\\x1b[2J\\\\x1b[31mX"`` (printed: ``\\x1b[2J\\x1b[31mX``);
        ``"a\\tb"`` -> ``"a\\\\tb"``; ``"caf\\u00e9"`` -> ``"caf\\u00e9"`` unchanged.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)
