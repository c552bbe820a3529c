"""Text from models, files and names escaped for the format it lands in.

A workload named ``a|b`` or ``<img src=x>`` must not shift a Markdown table's columns or inject
HTML into a CI step summary; HTML output uses :func:`html.escape` at each cell.
"""

from __future__ import annotations

import re
from typing import Any

_MD = str.maketrans({"\\": "\\\\", "|": "\\|", "\n": " ", "\r": " "})
# Only a '<' that can open a tag or comment is escaped, so "0.91 < 0.95" stays readable in a
# terminal while "<img src=x>" cannot reach a Markdown renderer as HTML.
_TAG = re.compile(r"<(?=[A-Za-z/!?])")


def md(value: Any) -> str:
    """``value`` as text safe inside a Markdown table cell (GitHub-flavoured)."""
    return _TAG.sub("&lt;", str(value).translate(_MD))
