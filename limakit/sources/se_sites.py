"""Where a Stack Exchange dump's sites are and what each is called.

A dump is one folder or ``.7z`` archive per site (``cooking.stackexchange.com.7z``), or for the
largest sites one archive per table (``stackoverflow.com-Posts.7z``, ``...-Comments.7z``); a site
folder holds ``Posts.xml``. These helpers find the sites, name them (meta sites apart) and give
each one's ``Posts.xml``; reading it is :mod:`limakit.sources.stackexchange`'s work.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from limakit.core.errors import LimaError

SITE_SUFFIXES = (".stackexchange.com", ".stackoverflow.com", ".com", ".net", ".org")
# The largest sites ship one archive per table (``stackoverflow.com-Posts.7z``,
# ``stackoverflow.com-Comments.7z``...); only the Posts archive is read.
_TABLE_ARCHIVE = re.compile(
    r"^(?P<host>.+)-(?P<table>Posts|Badges|Comments|PostHistory|PostLinks|Tags|Users|Votes)$",
    re.IGNORECASE,
)


def site_host(path: str | os.PathLike) -> str:
    """The site's host name as the dump spells it: ``d/stackoverflow.com-Posts.7z`` ->
    ``stackoverflow.com``, ``d/math.stackexchange.com/Posts.xml`` -> ``math.stackexchange.com``.

    >>> site_host("dumps/cstheory.meta.stackexchange.com.7z")
    'cstheory.meta.stackexchange.com'
    """
    p = Path(path)
    name = p.name
    if name == "Posts.xml":
        name = p.parent.name
    if name.lower().endswith(".7z"):
        name = name[:-3]
    m = _TABLE_ARCHIVE.match(name)
    if m:
        name = m.group("host")
    return name.lower()


def is_meta_site(path: str | os.PathLike) -> bool:
    """A meta site: the site about a site (its policy, scope, bugs), not one of its Q&A exchanges.

    Meta hosts carry ``meta`` as a label: ``cstheory.meta.stackexchange.com``,
    ``meta.stackoverflow.com``, ``meta.superuser.com``, ``es.meta.stackoverflow.com`` and the
    network-wide ``meta.stackexchange.com``.

    >>> is_meta_site("d/cstheory.meta.stackexchange.com.7z"), is_meta_site("d/cstheory.com")
    (True, False)
    """
    return "meta" in site_host(path).split(".")


def site_name(path: str | os.PathLike) -> str:
    """``/d/cooking.stackexchange.com.7z`` -> ``cooking``; ``stackoverflow.com`` -> ``stackoverflow``.

    A meta site is named after its main site with ``.meta`` after it (``cstheory.meta``,
    ``stackoverflow.meta`` for ``meta.stackoverflow.com``, ``superuser.meta`` for
    ``meta.superuser.com``); the network-wide ``meta.stackexchange.com`` is ``meta``. So no two
    sites of a full dump share a name.

    >>> site_name("dumps/math.stackexchange.com"), site_name("dumps/meta.stackoverflow.com.7z")
    ('math', 'stackoverflow.meta')
    """
    host = site_host(path)
    suffix = next((x for x in SITE_SUFFIXES if host.endswith(x)), "")
    name = host[: -len(suffix)] if suffix else host
    if name == "meta" and suffix == ".stackoverflow.com":  # meta.stackoverflow.com
        return "stackoverflow.meta"
    if name.startswith("meta."):  # meta.superuser.com -> superuser.meta
        return name[len("meta.") :] + ".meta"
    return name


def _is_site(p: Path) -> bool:
    if p.is_dir():
        return (p / "Posts.xml").exists()
    if p.suffix.lower() != ".7z":
        return False
    m = _TABLE_ARCHIVE.match(p.name[:-3])
    return m is None or m.group("table").lower() == "posts"


def find_sites(root: str | os.PathLike) -> list[Path]:
    """Site sources under ``root``: a folder with Posts.xml, a ``.7z`` archive, or many of them.

    Of a site split into one archive per table (``stackoverflow.com-Posts.7z`` and its
    neighbours), only the Posts archive is a site source.
    """
    root = Path(root)
    if not root.exists():
        raise LimaError(f"{root}: Stack Exchange dump not found")
    if root.is_file():
        return [root]
    if (root / "Posts.xml").exists():
        return [root]
    sites = sorted(p for p in root.iterdir() if _is_site(p))
    if not sites:
        raise LimaError(f"{root}: no site folder with Posts.xml and no .7z archive found")
    return sites


@contextlib.contextmanager
def posts_file(site_path: Path) -> Iterator[Path]:
    """The Posts.xml of a site; a ``.7z`` is extracted to a temporary folder (disk, not memory)."""
    if site_path.is_file() and site_path.suffix == ".7z":
        import py7zr

        with tempfile.TemporaryDirectory(prefix="lima-se-") as tmp:
            try:
                with py7zr.SevenZipFile(site_path, "r") as archive:
                    names = [n for n in archive.getnames() if Path(n).name == "Posts.xml"]
                    if not names:
                        raise LimaError(f"{site_path}: archive holds no Posts.xml")
                    archive.extract(path=tmp, targets=[names[0]])
            except LimaError:
                raise
            except Exception as e:  # py7zr raises several unrelated types for damage
                raise LimaError(f"{site_path}: cannot read the 7z archive ({e})") from None
            yield Path(tmp) / names[0]
    elif site_path.is_file():
        yield site_path
    else:
        yield site_path / "Posts.xml"
