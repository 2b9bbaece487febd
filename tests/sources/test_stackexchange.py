"""Stack Exchange reader: pairing, score rejections, .7z archives and every kind of damage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from limakit.core.errors import LimaError
from limakit.sources.se_sites import find_sites, is_meta_site, posts_file, site_name
from limakit.sources.stackexchange import scan_site

FIX = Path(__file__).parent.parent / "fixtures" / "stackexchange"
COOKING = FIX / "cooking.stackexchange.com" / "Posts.xml"


def test_site_name_from_dump_names():
    assert site_name("dumps/cooking.stackexchange.com") == "cooking"
    assert site_name("dumps/stackoverflow.com.7z") == "stackoverflow"
    assert site_name("d/math.stackexchange.com/Posts.xml") == "math"
    assert site_name("mathoverflow.net") == "mathoverflow"


def test_pairs_each_question_with_its_top_answer():
    scan = scan_site(COOKING)
    assert scan.site == "cooking"
    assert (scan.questions, scan.answers) == (8, 8)
    by_q = {p.question_id: p for p in scan.pairs}
    # Question 1 has two answers: the higher-scored (and accepted) one is paired.
    assert by_q[1].answer_id == 2 and by_q[1].answer_score == 57 and by_q[1].accepted
    assert by_q[1].title == "When should I salt a steak before cooking it?"
    assert "<p>" in by_q[1].answer_html  # bodies stay HTML; cleaning is curation's job
    # Highest-scoring questions first.
    assert [p.question_score for p in scan.pairs] == sorted(
        (p.question_score for p in scan.pairs), reverse=True
    )


def test_score_rejections_at_the_threshold():
    scan = scan_site(COOKING, min_answer_score=10)
    rules = {qid: rule for qid, rule, *_ in scan.rejected}
    assert rules == {8: "answer_score", 12: "no_answer", 15: "question_score"}
    # Question 4's top answer scores exactly 10: kept.
    assert 4 in {p.question_id for p in scan.pairs}
    scan = scan_site(COOKING, min_answer_score=11)
    assert 4 in {qid for qid, rule, *_ in scan.rejected if rule == "answer_score"}
    scan = scan_site(COOKING, min_question_score=None)
    assert 15 in {p.question_id for p in scan.pairs}


def test_pool_bounds_the_texts_kept():
    scan = scan_site(COOKING, pool=2)
    assert [p.question_id for p in scan.pairs] == [1, 4]
    assert scan.eligible == 5 and scan.beyond_pool == 3


def test_reads_a_site_7z_archive(tmp_path):
    import py7zr

    archive = tmp_path / "cooking.stackexchange.com.7z"
    with py7zr.SevenZipFile(archive, "w") as z:
        z.write(COOKING, "Posts.xml")
    assert find_sites(tmp_path) == [archive]
    with posts_file(archive) as posts:
        scan = scan_site(posts, site=site_name(archive))
    assert scan.site == "cooking" and len(scan.pairs) == 5
    assert not posts.exists()  # the extracted copy is removed afterwards


def test_find_sites_in_a_dump_folder(tmp_path):
    assert [p.name for p in find_sites(FIX)] == [
        "cooking.stackexchange.com",
        "math.stackexchange.com",
    ]
    assert find_sites(FIX / "math.stackexchange.com") == [FIX / "math.stackexchange.com"]
    with pytest.raises(LimaError, match="no site folder"):
        find_sites(tmp_path)


def _write(tmp_path, text: str | bytes) -> Path:
    p = tmp_path / "Posts.xml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def test_truncated_xml_names_file_and_line(tmp_path):
    data = COOKING.read_text(encoding="utf-8")
    p = _write(tmp_path, data[: len(data) // 2])
    with pytest.raises(LimaError, match=r"Posts\.xml:\d+:\d+: malformed XML"):
        scan_site(p)


def test_malformed_xml_names_the_line(tmp_path):
    p = _write(
        tmp_path,
        '<?xml version="1.0"?>\n<posts>\n  <row Id="1" PostTypeId="1" Score="3"\n  <row/>\n</posts>\n',
    )
    with pytest.raises(LimaError, match=r"Posts\.xml:[34]:"):
        scan_site(p)


def test_missing_attribute_is_named(tmp_path):
    p = _write(
        tmp_path,
        '<posts>\n<row Id="1" PostTypeId="1" Score="3" />\n<row Id="2" PostTypeId="2" Score="12" />\n</posts>',
    )
    with pytest.raises(LimaError, match=r"Posts\.xml:3: row Id=2 lacks attribute ParentId"):
        scan_site(p)


def test_non_integer_score_is_named(tmp_path):
    p = _write(tmp_path, '<posts>\n<row Id="1" PostTypeId="1" Score="lots" />\n</posts>')
    with pytest.raises(LimaError, match=r"Posts\.xml:2: row attribute Score='lots'"):
        scan_site(p)


def test_invalid_utf8_is_structural(tmp_path):
    p = _write(
        tmp_path,
        b'<?xml version="1.0" encoding="utf-8"?>\n<posts>\n<row Id="1" PostTypeId="1" Score="3" Title="caf\xe9" />\n</posts>',
    )
    with pytest.raises(LimaError, match=r"Posts\.xml:3"):
        scan_site(p)


def test_damaged_7z_archive(tmp_path):
    bad = tmp_path / "broken.stackexchange.com.7z"
    bad.write_bytes(b"7z\xbc\xaf\x27\x1c" + b"\0" * 40)
    with pytest.raises(LimaError, match="broken.stackexchange.com.7z"):
        with posts_file(bad):
            pass


def test_site_folder_copy_is_read(tmp_path):
    site = tmp_path / "travel.stackexchange.com"
    shutil.copytree(FIX / "math.stackexchange.com", site)
    with posts_file(site) as posts:
        scan = scan_site(posts, site=site_name(site))
    assert scan.site == "travel" and scan.pairs[0].answer_score == 120


def test_other_attribute_orders_give_the_same_pairs(tmp_path):
    """Files not in the dump's exact layout take the XML-parser path, with the same result."""
    from lxml import etree

    tree = etree.parse(str(COOKING))
    for row in tree.getroot():
        items = list(row.attrib.items())
        row.attrib.clear()
        for k, v in reversed(items):  # Score and ParentId now come after Body
            row.set(k, v)
    p = tmp_path / "Posts.xml"
    tree.write(str(p), encoding="utf-8", xml_declaration=True)
    assert "Body=" in p.read_text(encoding="utf-8").split("Score=")[0]
    fast, slow = scan_site(COOKING), scan_site(p)
    assert [(x.question_id, x.answer_id, x.answer_html) for x in slow.pairs] == [
        (x.question_id, x.answer_id, x.answer_html) for x in fast.pairs
    ]
    assert slow.rejected == fast.rejected


def test_truncated_at_a_row_boundary(tmp_path):
    lines = COOKING.read_text(encoding="utf-8").splitlines(keepends=True)
    p = _write(tmp_path, "".join(lines[:6]))  # whole rows, but no closing </posts>
    with pytest.raises(LimaError, match=r"Posts\.xml:\d+:\d+: malformed XML"):
        scan_site(p)


def test_bad_entity_in_a_chosen_row_names_its_line(tmp_path):
    text = COOKING.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    row = next(i for i, line in enumerate(lines) if 'Id="2" PostTypeId="2"' in line)
    lines[row] = lines[row].replace("&lt;p&gt;Salt", "&lt;p&gt;&bogus; Salt", 1)
    p = _write(tmp_path, "".join(lines))
    with pytest.raises(LimaError, match=rf"Posts\.xml:{row + 1}: malformed XML row"):
        scan_site(p)


def test_meta_sites_are_told_apart_and_named_distinctly():
    names = {
        "d/cstheory.stackexchange.com.7z": ("cstheory", False),
        "d/cstheory.meta.stackexchange.com.7z": ("cstheory.meta", True),
        "d/cstheory.meta.stackexchange.com/Posts.xml": ("cstheory.meta", True),
        "d/meta.stackexchange.com.7z": ("meta", True),
        "d/stackoverflow.com-Posts.7z": ("stackoverflow", False),
        "d/meta.stackoverflow.com.7z": ("stackoverflow.meta", True),
        "d/superuser.com.7z": ("superuser", False),
        "d/meta.superuser.com.7z": ("superuser.meta", True),
        "d/es.meta.stackoverflow.com.7z": ("es.meta", True),
        "d/metafilter.com": ("metafilter", False),
    }
    for path, (name, meta) in names.items():
        assert (site_name(path), is_meta_site(path)) == (name, meta), path


def test_find_sites_in_a_full_dump_layout(tmp_path):
    """Every site has its meta beside it; Stack Overflow comes as one archive per table."""
    for name in (
        "cstheory.stackexchange.com.7z",
        "cstheory.meta.stackexchange.com.7z",
        "meta.stackexchange.com.7z",
        "stackoverflow.com-Posts.7z",
        "stackoverflow.com-Comments.7z",
        "stackoverflow.com-PostHistory.7z",
        "stackoverflow.com-Users.7z",
        "meta.stackoverflow.com.7z",
        "Sites.xml",
    ):
        (tmp_path / name).write_bytes(b"")
    shutil.copytree(FIX / "math.stackexchange.com", tmp_path / "math.stackexchange.com")
    found = find_sites(tmp_path)
    assert [p.name for p in found] == [
        "cstheory.meta.stackexchange.com.7z",
        "cstheory.stackexchange.com.7z",
        "math.stackexchange.com",
        "meta.stackexchange.com.7z",
        "meta.stackoverflow.com.7z",
        "stackoverflow.com-Posts.7z",
    ]
    assert len({site_name(p) for p in found}) == len(found)
    assert [site_name(p) for p in found if not is_meta_site(p)] == [
        "cstheory",
        "math",
        "stackoverflow",
    ]
