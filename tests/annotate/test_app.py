"""The annotation app over real HTTP on loopback: access, CSRF, privacy, limits, headers."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.annotate.helpers import XSS, Server, csrf_of, make_db, pair_id_of

SECRET = "the secret answer text 7f3a"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("app")
    path = make_db(d, [SECRET, "alpha two", XSS], ["beta one", "beta two", "beta three"])
    with Server(path) as s:
        yield s


def test_without_a_session_every_page_is_refused_and_shows_no_answer(server):
    c = server.client()
    for path in ("/", "/sets/1", "/admin", "/api/verdicts", "/api/verdicts/1"):
        r = c.get(path)
        assert r.status_code == 401, path
        assert SECRET not in r.text and "beta one" not in r.text
    r = c.post("/sets/1/verdict", data={"pair_id": "1", "choice": "A", "csrf": "x"})
    assert r.status_code == 401
    forged = server.client()
    forged.cookies.set("lima_session", "made-up")
    r = forged.get("/sets/1")
    assert r.status_code == 401 and SECRET not in r.text


def test_a_login_token_works_once(server):
    token = server.token("once")
    c = server.client()
    page = c.get("/login", params={"token": token})
    assert c.post("/login", data={"token": token, "csrf": csrf_of(page.text)}).status_code == 303
    other = server.client()
    page = other.get("/login", params={"token": token})
    r = other.post("/login", data={"token": token, "csrf": csrf_of(page.text)})
    assert r.status_code == 403 and "already used" in r.text
    assert other.get("/sets/1").status_code == 401


def test_login_without_its_form_token_is_refused(server):
    token = server.token("formless")
    r = server.client().post("/login", data={"token": token})
    assert r.status_code == 403
    assert server.client().get("/sets/1").status_code == 401


def test_session_cookie_is_httponly_and_samesite(server):
    token = server.token("cookie")
    c = server.client()
    page = c.get("/login", params={"token": token})
    r = c.post("/login", data={"token": token, "csrf": csrf_of(page.text)})
    cookie = r.headers["set-cookie"].lower()
    assert "lima_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie


def test_post_without_the_csrf_token_is_refused_and_records_nothing(server):
    c = server.client("csrf-less")
    page = c.get("/sets/1")
    pair = pair_id_of(page.text)
    r = c.post("/sets/1/verdict", data={"pair_id": pair, "choice": "A"})
    assert r.status_code == 403
    r = c.post("/sets/1/verdict", data={"pair_id": pair, "choice": "A", "csrf": "wrong"})
    assert r.status_code == 403
    assert c.get("/api/verdicts").json()["verdicts"] == []
    r = c.post("/sets/1/verdict", data={"pair_id": pair, "choice": "A", "csrf": csrf_of(page.text)})
    assert r.status_code == 303
    assert len(c.get("/api/verdicts").json()["verdicts"]) == 1


def test_one_annotator_cannot_read_another_ones_verdicts(server):
    ann, bob = server.client("ann"), server.client("bob")
    page = ann.get("/sets/1")
    ann.post(
        "/sets/1/verdict",
        data={"pair_id": pair_id_of(page.text), "choice": "B", "comment": "ann's note",
              "csrf": csrf_of(page.text)},
    )  # fmt: skip
    mine = ann.get("/api/verdicts").json()["verdicts"]
    assert [v["comment"] for v in mine] == ["ann's note"]
    assert ann.get(f"/api/verdicts/{mine[0]['verdict']}").status_code == 200
    assert bob.get("/api/verdicts").json() == {"user": "bob", "verdicts": []}
    r = bob.get(f"/api/verdicts/{mine[0]['verdict']}")
    assert r.status_code == 404 and "ann's note" not in r.text
    assert bob.get("/admin").status_code == 403
    # bob's own page starts at his first pair: ann's verdict does not move him on
    assert pair_id_of(bob.get("/sets/1").text) == pair_id_of(page.text)


def test_admin_sees_progress_and_agreement(server):
    for name, choice in (("judge-x", "A"), ("judge-y", "A")):
        c = server.client(name)
        page = c.get("/sets/1")
        c.post("/sets/1/verdict",
               data={"pair_id": pair_id_of(page.text), "choice": choice, "csrf": csrf_of(page.text)})  # fmt: skip
    r = server.client("boss", admin=True).get("/admin")
    assert r.status_code == 200 and "judge-x" in r.text
    text = " ".join(r.text.split())
    # ann (B) was first on pair 1 of the module's server; judge-x and judge-y both said A
    assert re.search(r"Agreement between annotators over 1 pairs \((\d+) comparisons\)", text)
    assert "prefers model-a on" in text


def test_bodies_over_the_limit_are_refused(server):
    c = server.client("big")
    r = c.post("/sets/1/verdict", content=b"x" * 200_000,
               headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert r.status_code == 413

    def chunks():
        for _ in range(100):
            yield b"x" * 1000

    r = c.post("/sets/1/verdict", content=chunks(),
               headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert r.status_code == 413


def test_pages_carry_a_strict_content_security_policy(server):
    r = server.client("headers").get("/sets/1")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "img-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in r.text.replace('<script src="/static/app.js" defer></script>', "")


def test_raw_html_in_answers_is_escaped_in_the_page(server):
    c = server.client("reader")
    for _ in range(2):  # judge the first two pairs to reach the third, which holds the XSS
        page = c.get("/sets/1")
        c.post("/sets/1/verdict",
               data={"pair_id": pair_id_of(page.text), "choice": "C", "csrf": csrf_of(page.text)})  # fmt: skip
    html = c.get("/sets/1").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<img" not in html and 'href="javascript:' not in html


def test_cookies_can_be_marked_secure_for_https(tmp_path):
    with Server(make_db(tmp_path, ["x"], ["y"]), secure_cookies=True) as s:
        token = s.token("tls")
        c = s.client()
        page = c.get("/login", params={"token": token})
        assert "secure" in page.headers["set-cookie"].lower()
        csrf = csrf_of(page.text)
        # a browser keeps Secure cookies for HTTPS; send this one by hand over the test's HTTP
        r = httpx.post(f"{s.url}/login", data={"token": token, "csrf": csrf},
                       headers={"cookie": f"lima_login={csrf}"})  # fmt: skip
        assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()


def test_a_file_that_is_no_annotation_database_is_one_clear_error(tmp_path):
    from limakit.annotate.app import create_app
    from limakit.core.errors import LimaError

    (tmp_path / "junk.sqlite").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(LimaError, match="junk.sqlite: not an annotation database"):
        create_app(tmp_path / "junk.sqlite")


def _verdict_form(c: httpx.Client, set_id: int = 1) -> dict:
    page = c.get(f"/sets/{set_id}")
    return {"pair_id": pair_id_of(page.text), "csrf": csrf_of(page.text)}


def test_a_multi_line_comment_at_the_limit_is_counted_as_the_browser_counts_it(server):
    """A form sends each line break as CRLF; the page's maxlength counts it as one character."""
    from limakit.annotate.app import MAX_COMMENT

    c = server.client("lines")
    line = "x" * 49
    lines = [line] * (MAX_COMMENT // 50)  # 40 lines of 49 characters and 39 breaks: 1,999
    typed = "\n".join(lines) + "!"  # what the browser counts: exactly MAX_COMMENT
    assert len(typed) == MAX_COMMENT
    sent = typed.replace("\n", "\r\n")  # what the form submits: 39 characters more
    r = c.post("/sets/1/verdict", data={**_verdict_form(c), "choice": "A", "comment": sent})
    assert r.status_code == 303
    (mine,) = c.get("/api/verdicts").json()["verdicts"]
    assert mine["comment"] == typed


def test_form_errors_come_back_as_the_apps_page_and_record_nothing(server):
    from limakit.annotate.app import MAX_COMMENT

    c = server.client("faulty-forms")
    form = _verdict_form(c)
    note = "my private note " + "y" * MAX_COMMENT
    for data, says in (
        ({**form, "choice": "A", "comment": note}, "comment"),
        ({**form, "choice": "Z"}, "choice"),
        ({"csrf": form["csrf"], "choice": "A"}, "pair_id"),
        ({**form, "pair_id": "first", "choice": "A"}, "pair_id"),
        ({**form, "pair_id": str(2**70), "choice": "A"}, "pair_id"),
    ):
        r = c.post("/sets/1/verdict", data=data)
        assert r.status_code == 400, (data, r.status_code, r.text[:200])
        assert r.headers["content-type"].startswith("text/html")
        assert 'id="message"' in r.text and says in r.text and "not recorded" in r.text
        assert "my private note" not in r.text  # the comment is never echoed back
    assert c.get("/api/verdicts").json()["verdicts"] == []


def test_ids_beyond_sqlite_integers_are_unknown_not_server_errors(server):
    c = server.client("huge-ids")
    for path in (f"/api/verdicts/{2**70}", f"/api/verdicts/{-(2**70)}", "/api/verdicts/abc"):
        r = c.get(path)
        assert r.status_code == 404, path
        assert r.json() == {"error": "no such verdict"}
    r = c.get(f"/sets/{2**70}")
    assert r.status_code == 404 and 'id="message"' in r.text
    r = c.post(f"/sets/{2**70}/verdict", data={**_verdict_form(c), "choice": "A"})
    assert r.status_code == 404 and 'id="message"' in r.text
    assert c.get("/api/verdicts").json()["verdicts"] == []


def test_head_answers_like_get_without_a_body(server):
    boss = server.client("head-boss", admin=True)
    got, head = boss.get("/"), boss.head("/")
    assert got.status_code == head.status_code == 200
    assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"]
    annotator = server.client("head-annotator")  # one set: GET / sends an annotator to it
    got, head = annotator.get("/"), annotator.head("/")
    assert got.status_code == head.status_code == 303
    assert head.headers["location"] == got.headers["location"] == "/sets/1"
    assert server.client().head("/").status_code == 401
