"""The annotation web app: server-rendered pages, one pair at a time, blinded and side-swapped.

Every page and API call needs a session (a cookie set by spending a one-time login token); every
POST carries the session's CSRF token. Answers are rendered as Markdown with raw HTML shown as
text and images off, under a Content-Security-Policy that allows nothing but the app's own files.
A form that is not accepted comes back as the app's own page, saying what was wrong and that
nothing was recorded; an id that names nothing (beyond SQLite's integers too) is a 404.

>>> app = create_app("annotations.sqlite")  # doctest: +SKIP
>>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
"""

import os
import secrets
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import jinja2
from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from markdown_it import MarkdownIt
from starlette.exceptions import HTTPException as StarletteHTTPException

from limakit.annotate import db
from limakit.annotate.export import BUTTONS, verdict_row
from limakit.annotate.security import MAX_BODY, GuardMiddleware
from limakit.evaluation.agreement import RESULT_TO_LABEL, between_annotators, majority

HERE = Path(__file__).parent
SESSION_COOKIE = "lima_session"
LOGIN_COOKIE = "lima_login"
MAX_COMMENT = 2000


def markdown_renderer() -> MarkdownIt:
    """CommonMark with raw HTML off (shown as text) and images off (nothing is ever loaded).

    >>> markdown_renderer().render("<b>hi</b>")
    '<p>&lt;b&gt;hi&lt;/b&gt;</p>\\n'
    """
    md = MarkdownIt("commonmark", {"html": False}).disable("image")

    def link_open(renderer, tokens, idx, options, env):
        tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
        return renderer.renderToken(tokens, idx, options, env)

    md.add_render_rule("link_open", link_open)
    return md


class _Auth(Exception):
    """No (valid) session: a 401 that reveals nothing but the way to sign in."""


@dataclass
class _State:
    """What every route needs: the database path, the templates, the cookie policy."""

    db_path: str | os.PathLike
    templates: jinja2.Environment
    secure_cookies: bool


def _state(request: Request) -> _State:
    return request.app.state.lima


def _page(request: Request, name: str, status: int = 200, **ctx) -> HTMLResponse:
    html = _state(request).templates.get_template(name).render(**ctx)
    return HTMLResponse(html, status_code=status)


def _conn(request: Request) -> Iterator[sqlite3.Connection]:
    c = db.connect(_state(request).db_path)
    try:
        yield c
    finally:
        c.close()


Conn = Annotated[sqlite3.Connection, Depends(_conn)]


def _user(request: Request, c: Conn) -> db.User:
    u = db.session_user(c, request.cookies.get(SESSION_COOKIE))
    if u is None:
        raise _Auth
    return u


Person = Annotated[db.User, Depends(_user)]
Csrf = Annotated[str, Form(max_length=200)]
# Row ids are SQLite integers (64-bit); a number beyond them names nothing that exists.
SetId = Annotated[int, PathParam(ge=1, le=db.MAX_ID)]
VerdictId = Annotated[int, PathParam(ge=1, le=db.MAX_ID)]
PairId = Annotated[int, Form(ge=1, le=db.MAX_ID)]
# A form sends each line break as CRLF while the page's maxlength counts it as one character, so
# the limit is checked after normalising, on the text the page counted (the body cap bounds the
# raw field). Characters beyond the BMP count two in the page, one here: never stricter here.
RawComment = Annotated[str, Form()]
# What each path parameter names, for the 404 of a value out of range or not a number.
NOT_FOUND = {"set_id": "no such set", "verdict_id": "no such verdict"}


def normalise_comment(text: str) -> str:
    """Line breaks as the browser counts them (CRLF and CR become LF), outer blanks trimmed.

    >>> normalise_comment("one\\r\\ntwo\\rthree\\n ")
    'one\\ntwo\\nthree'
    """
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def _check_csrf(u: db.User, token: str) -> None:
    if not token or not secrets.compare_digest(token, u.csrf):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page")


def _the_set(c: sqlite3.Connection, set_id: int) -> db.SetInfo:
    s = db.get_set(c, set_id)
    if s is None:
        raise HTTPException(404, "no such set")
    return s


def _no_session(request: Request, exc: _Auth) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": "sign in first"}, status_code=401)
    return _page(request, "message.html", 401, title="Sign in", user=None,
                 text="Open the one-time link you were given to sign in.")  # fmt: skip


def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    resp = _page(
        request, "message.html", exc.status_code, title="Error", text=str(exc.detail), user=None
    )
    if exc.headers:
        resp.headers.update(exc.headers)
    return resp


def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
    """A path id out of range or not a number is a 404; a bad form field, the app's own 400 page.

    The message names the fields and what was wrong, never the values sent (a comment stays
    private), and says plainly that nothing was recorded.
    """
    errors = exc.errors()
    for e in errors:
        loc = e.get("loc") or ()
        if loc and loc[0] == "path":
            detail = NOT_FOUND.get(str(loc[-1]), "not found")
            return _http_error(request, StarletteHTTPException(404, detail))
    fields = "; ".join(f"{e['loc'][-1] if e.get('loc') else 'form'}: {_reason(e)}" for e in errors)
    if request.url.path.endswith("/verdict"):
        detail = (
            f"The verdict was not recorded: the form was not accepted ({fields}). "
            "Reload the page and choose again."
        )
    else:
        detail = (
            f"The form was not accepted ({fields}); nothing was changed. "
            "Reload the page and try again."
        )
    return _http_error(request, StarletteHTTPException(400, detail))


def _reason(error: dict) -> str:
    if error.get("type") == "missing":
        return "missing"
    return str(error.get("msg", "not valid")).removeprefix("Value error, ")


# Every page answers HEAD as it answers GET (the server sends the headers, no body).
GET = ["GET", "HEAD"]


# -- signing in and out ----------------------------------------------------------------------------
auth = APIRouter()


@auth.api_route("/login", methods=GET)
def login_form(request: Request, token: str = "") -> Response:
    csrf = secrets.token_urlsafe(16)
    resp = _page(request, "login.html", token=token, csrf=csrf, user=None)
    resp.set_cookie(LOGIN_COOKIE, csrf, httponly=True, samesite="strict",
                    secure=_state(request).secure_cookies, max_age=3600)  # fmt: skip
    return resp


@auth.post("/login")
def login(
    request: Request,
    c: Conn,
    token: Annotated[str, Form(max_length=200)] = "",
    csrf: Csrf = "",
) -> Response:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not csrf or not expected or not secrets.compare_digest(csrf, expected):
        raise HTTPException(403, "the sign-in form expired; open your link again")
    session = db.login(c, token)
    if session is None:
        raise HTTPException(403, "this sign-in link is unknown or was already used")
    resp = RedirectResponse("/", status_code=303)
    resp.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict",
                    secure=_state(request).secure_cookies,
                    max_age=db.SESSION_DAYS * 86400)  # fmt: skip
    resp.delete_cookie(LOGIN_COOKIE)
    return resp


@auth.post("/logout")
def logout(request: Request, u: Person, c: Conn, csrf: Csrf = "") -> Response:
    _check_csrf(u, csrf)
    db.logout(c, request.cookies.get(SESSION_COOKIE, ""))
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE)
    return resp


# -- annotating ------------------------------------------------------------------------------------
pages = APIRouter()


@pages.api_route("/", methods=GET)
def index(request: Request, u: Person, c: Conn) -> Response:
    sets = db.list_sets(c)
    if len(sets) == 1 and not u.admin:
        return RedirectResponse(f"/sets/{sets[0].id}", status_code=303)
    done = {s.id: db.progress(c, u.id, s.id) for s in sets}
    return _page(request, "index.html", user=u, sets=sets, done=done)


@pages.api_route("/sets/{set_id}", methods=GET)
def annotate(request: Request, set_id: SetId, u: Person, c: Conn) -> Response:
    s = _the_set(c, set_id)
    done = db.progress(c, u.id, s.id)
    pair = db.next_pair(c, u, s)
    ctx = {"user": u, "set": s, "done": done, "buttons": BUTTONS, "max_comment": MAX_COMMENT}
    if pair is None:
        return _page(request, "done.html", **ctx)
    return _page(request, "pair.html", pair=pair, **ctx)


@pages.post("/sets/{set_id}/verdict")
def verdict(
    set_id: SetId,
    u: Person,
    c: Conn,
    pair_id: PairId,
    choice: Annotated[Literal["A", "B", "C"], Form()],
    comment: RawComment = "",
    csrf: Csrf = "",
) -> Response:
    _check_csrf(u, csrf)
    s = _the_set(c, set_id)
    note = normalise_comment(comment)
    if len(note) > MAX_COMMENT:
        raise HTTPException(
            400,
            f"The verdict was not recorded: the comment has {len(note)} characters, over the "
            f"limit of {MAX_COMMENT}. Go back to the pair, shorten it and choose again.",
        )
    try:
        db.record(c, u, s, pair_id, choice, note)
    except KeyError:
        raise HTTPException(404, "no such pair in this set") from None
    # A second press on a pair already judged changes nothing and moves on.
    return RedirectResponse(f"/sets/{s.id}", status_code=303)


@pages.post("/sets/{set_id}/undo")
def undo(set_id: SetId, u: Person, c: Conn, csrf: Csrf = "") -> Response:
    _check_csrf(u, csrf)
    db.undo_last(c, u, _the_set(c, set_id))
    return RedirectResponse(f"/sets/{set_id}", status_code=303)


@pages.api_route("/admin", methods=GET)
def admin(request: Request, u: Person, c: Conn) -> Response:
    if not u.admin:
        raise HTTPException(403, "only an admin sees progress and agreement")
    rows = []
    for s in db.list_sets(c):
        verdicts = [verdict_row(r) for r in db.live_verdicts(c, s.id)]
        by_item: dict[tuple, dict[str, str]] = defaultdict(dict)
        for v in verdicts:
            by_item[(v["id"], v["sample"])][v["annotator"]] = RESULT_TO_LABEL[v["result"]]
        majorities = [majority(list(x.values())) for x in by_item.values()]
        rows.append({
            "set": s,
            "people": db.annotator_progress(c, s.id),
            "pairs_done": len(by_item),
            "prefer": {k: majorities.count(k) for k in ("a", "tie", "b")},
            "agreement": between_annotators(by_item, resamples=200),
        })  # fmt: skip
    return _page(request, "admin.html", user=u, rows=rows)


# -- JSON API --------------------------------------------------------------------------------------
api = APIRouter(prefix="/api")


@api.api_route("/verdicts", methods=GET)
def my_verdicts(u: Person, c: Conn) -> dict:
    """This person's own live verdicts, as shown (label, sides) and as exported."""
    out = []
    for s in db.list_sets(c):
        for r in db.live_verdicts(c, s.id, u.id):
            out.append({"verdict": r["id"], "set": s.name, "label": r["label"],
                        **verdict_row(r)})  # fmt: skip
    return {"user": u.name, "verdicts": out}


@api.api_route("/verdicts/{verdict_id}", methods=GET)
def one_verdict(verdict_id: VerdictId, u: Person, c: Conn) -> dict:
    r = db.verdict_of(c, verdict_id, u.id)
    if r is None:  # someone else's and missing look the same
        raise HTTPException(404, "no such verdict")
    return {k: r[k] for k in r.keys()}


def create_app(db_path: str | os.PathLike, *, secure_cookies: bool = False) -> GuardMiddleware:
    """The ASGI app over one annotation database (which must exist; `serve` creates it)."""
    db.connect(db_path).close()  # fail now, with the path, when the file is not a database
    md = markdown_renderer()
    templates = jinja2.Environment(
        loader=jinja2.PackageLoader("limakit.annotate", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    templates.filters["markdown"] = lambda text: jinja2.utils.markupsafe.Markup(md.render(text))
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.lima = _State(db_path, templates, secure_cookies)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_exception_handler(_Auth, _no_session)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    for router in (auth, pages, api):
        app.include_router(router)
    return GuardMiddleware(app, max_body=MAX_BODY)
