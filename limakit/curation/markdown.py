"""HTML (as in Stack Exchange bodies) to clean Markdown, with markdownify.

Code blocks stay fenced code, lists stay lists, emphasis and headings stay; link text stays but the
link goes; images, scripts and other tags go; entities are decoded.

>>> html_to_markdown('<p>See <a href="http://x">the docs</a> &amp; <img src="a.png"/></p><ul><li>a</li></ul>')
'See the docs &\\n\\n- a'
"""

from __future__ import annotations

import re

from markdownify import MarkdownConverter

_BLANKS = re.compile(r"\n{3,}")
_TRAILING = re.compile(r"[ \t]+\n")


class _Converter(MarkdownConverter):
    # Images carry no text a model can learn from; dropping them entirely (alt text too) keeps
    # sentences from gaining stray words.
    def convert_img(self, el, text, *args, **kwargs):  # noqa: D102
        return ""


_CONVERTER = _Converter(
    heading_style="ATX",
    bullets="-",
    strip=["a"],
    escape_asterisks=False,
    escape_underscores=False,
    escape_misc=False,
)


def html_to_markdown(html: str) -> str:
    """Convert an HTML fragment to Markdown; blank runs collapse, trailing spaces go."""
    if not html:
        return ""
    text = _CONVERTER.convert(html)
    text = _TRAILING.sub("\n", text)
    text = _BLANKS.sub("\n\n", text)
    return text.strip()
