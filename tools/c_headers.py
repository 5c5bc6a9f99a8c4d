"""Render fastdrop's C header templates (``fastdrop/_cython/NAME.h.in``).

setup.py renders each template with Cython's Tempita and keeps, of the
result's comments, only the file's leading comment block (what the header is
and how it is built); the comments inside the code are left out of the
generated header, which ships in the wheel for the C API.  The template,
with every comment, is the source: it is in the repository and the sdist.
(The comments of ``kernels.h`` alone were 7.7 kB of the compressed wheel,
whose limit is 600 kB; tools/check_wheel.sh.)

    >>> strip_comments('/* head */\\nint a; /* x */ int b; // y\\n')
    '/* head */\\nint a;   int b;\\n'
"""

import re

#: The leading comment block: blank space and comments before the first code.
_HEAD = re.compile(r"(?:\s*(?:/\*.*?\*/|//[^\n]*))*[ \t]*\n?", re.S)

#: Where the comments went, after the leading block of each generated header.
NOTE = ("/* (The template's other comments are left out of this generated file; "
        "they are in {template}, in fastdrop's source distribution.) */\n")


def _last_char(pieces):
    """The last character of the joined ``pieces`` that is not a blank."""
    for piece in reversed(pieces):
        piece = piece.rstrip(" \t")
        if piece:
            return piece[-1]
    return ""


def strip_comments(text, note=""):
    """C source ``text`` without comments after its leading comment block.

    A comment becomes one space (as the C preprocessor has it, so tokens on
    either side stay apart and a comment spanning lines inside a ``#define``
    ends the same way), string and character literals are copied as they
    are, trailing blanks are removed and runs of blank lines become one.
    ``note`` is inserted after the leading block.  Raises ValueError where
    stripping could change the tokens: a ``//`` comment continued by a
    backslash, a backslash just before a comment (which the stripping would
    turn into a line continuation), an unterminated comment or literal.
    """
    head = _HEAD.match(text)
    out = [text[:head.end()], note]
    i, n = head.end(), len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                if text[j] == "\n":
                    raise ValueError(f"unterminated literal at offset {i}")
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith(("//", "/*"), i):
            if _last_char(out[2:]) == "\\":
                raise ValueError(f"a backslash before the comment at offset {i}")
            if text[i + 1] == "/":
                j = text.find("\n", i)
                j = n if j < 0 else j
                if text[i:j].rstrip(" \t\r").endswith("\\"):
                    raise ValueError(f"a // comment continued on the next line at offset {i}")
            else:
                j = text.find("*/", i + 2)
                if j < 0:
                    raise ValueError(f"unterminated comment at offset {i}")
                j += 2
            i = j
            out.append(" ")
        else:
            j = i + 1  # plain text up to the next literal or slash ('/' alone: division)
            while j < n and text[j] not in "\"'/":
                j += 1
            out.append(text[i:j])
            i = j
    body = "".join(out[2:])
    lines = [line.rstrip() for line in body.split("\n")]
    body = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return out[0] + out[1] + body.lstrip("\n")


def render(path):
    """The header text of the Tempita template at ``path`` (NAME.h.in)."""
    import os

    from Cython import Tempita

    with open(path, encoding="utf-8") as f:
        text = Tempita.Template(f.read(), name=path).substitute()
    return strip_comments(text, NOTE.format(template=os.path.basename(path)))
