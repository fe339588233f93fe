"""Turning free-form solutions into steps and answers: sentence/line splitting that never cuts
through mathematics, ``\\boxed{...}`` extraction with nested braces, GSM8K calculator annotations."""

from __future__ import annotations

import re

_CALCULATOR = re.compile(r"<<[^<>]*>>")

# Display environments may span lines; inline math may not (a lone "$" used as a currency sign in
# word problems would otherwise swallow the rest of the solution).
_DISPLAY = (("$$", "$$"), ("\\[", "\\]"), ("[asy]", "[/asy]"))
_INLINE = (("$", "$"), ("\\(", "\\)"))
_BEGIN = re.compile(r"\\begin\{([^{}]+)\}")
_BOX = re.compile(r"\\(?:boxed|fbox)\b")
# Closers that may follow a sentence's final punctuation: "$x = 3.$ Then" ends a sentence.
_TRAILING_CLOSERS = ("$$", "$", "\\]", "\\)", ")", '"', "'", "\u201d", "\u2019")
_END_ENV = re.compile(r"\\end\{[^{}]+\}$")
_ABBREVIATIONS = ("e.g.", "i.e.", "cf.", "vs.", "Mr.", "Mrs.", "Ms.", "Dr.", "St.", "Fig.", "No.")


def strip_calculator(text: str) -> str:
    """Remove GSM8K calculator annotations: ``48/2 = <<48/2=24>>24`` becomes ``48/2 = 24``."""
    return _CALCULATOR.sub("", text)


def _escaped(text: str, i: int) -> bool:
    """Whether text[i] is preceded by an odd number of backslashes (``\\$`` is a literal dollar)."""
    n = 0
    while i - n - 1 >= 0 and text[i - n - 1] == "\\":
        n += 1
    return n % 2 == 1


def _find_close(text: str, close: str, start: int, stop: int) -> int | None:
    """Index just past the first unescaped ``close`` in text[start:stop], or None."""
    i = text.find(close, start, stop)
    while i != -1:
        # Only a leading "$" can be escaped; "\\]" and friends start with the backslash itself.
        if not (close[0] == "$" and _escaped(text, i)):
            return i + len(close)
        i = text.find(close, i + 1, stop)
    return None


def _protected_end(text: str, i: int) -> int | None:
    """If a math span or display block starts at i and is closed, the index just past its end."""
    if text[i] == "$" and _escaped(text, i):
        return None
    for open_, close in _DISPLAY:
        if text.startswith(open_, i):
            return _find_close(text, close, i + len(open_), len(text))
    if text.startswith("\\begin{", i):
        m = _BEGIN.match(text, i)
        if m:
            return _find_close(text, "\\end{" + m.group(1) + "}", m.end(), len(text))
    for open_, close in _INLINE:
        if text.startswith(open_, i):
            eol = text.find("\n", i)
            return _find_close(text, close, i + len(open_), len(text) if eol == -1 else eol)
    return None


def _ends_sentence(sentence: str) -> bool:
    s = sentence.rstrip()
    changed = True
    while changed:
        changed = False
        end_env = _END_ENV.search(s)
        if end_env and end_env.start() > 0:
            s = s[: end_env.start()].rstrip()
            changed = True
        for closer in _TRAILING_CLOSERS:
            if s.endswith(closer) and len(s) > len(closer):
                s = s[: -len(closer)].rstrip()
                changed = True
    if not s or s[-1] not in ".!?":
        return False
    last_word = s.rsplit(None, 1)[-1]
    return last_word not in _ABBREVIATIONS


def split_steps(text: str) -> list[str]:
    """Split a solution into steps: at every line break, and after a sentence's final ``.``, ``!`` or
    ``?`` when the next sentence does not start in lower case. Never inside ``$...$``, ``$$...$$``,
    ``\\(...\\)``, ``\\[...\\]``, ``\\begin{env}...\\end{env}`` or ``[asy]...[/asy]``. Steps are
    stripped; blank ones are dropped."""
    steps: list[str] = []
    start, i, n = 0, 0, len(text)
    while i < n:
        end = _protected_end(text, i)
        if end is not None:
            i = end
            # "\\[x = 2.\\]Then ..." (common in MATH): a sentence may end with math and no space.
            if i < n and not text[i].isspace() and _ends_sentence(text[start:i]) and _next_starts_sentence(text, i):
                steps.append(text[start:i])
                start = i
            continue
        c = text[i]
        if c == "\\":
            i += 2  # an escaped character (\$, \\, \{) is never a delimiter
            continue
        if c == "\n" or (c.isspace() and _ends_sentence(text[start:i]) and _next_starts_sentence(text, i)):
            steps.append(text[start:i])
            while i < n and text[i].isspace():
                i += 1
            start = i
            continue
        i += 1
    steps.append(text[start:])
    return [s.strip() for s in steps if s.strip()]


def _next_starts_sentence(text: str, i: int) -> bool:
    rest = text[i:].lstrip()
    return bool(rest) and not rest[0].islower()


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\fbox{...}`` in ``text`` with balanced nested braces
    (escaped ``\\{``/``\\}`` do not count), also the brace-less ``\\boxed 5`` form; None if absent or
    unclosed."""
    for m in reversed(list(_BOX.finditer(text))):
        j = m.end()
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] == "{":
            content = _braced(text, j)
            if content is not None:
                return content.strip()
        elif j > m.end():
            # "\boxed 5": the argument is the following token.
            token = re.match(r"[^\s$]+", text[j:])
            if token:
                return token.group(0)
    return None


def _braced(text: str, open_at: int) -> str | None:
    depth = 0
    i = open_at
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
        i += 1
    return None
