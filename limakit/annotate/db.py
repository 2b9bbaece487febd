"""The annotation database: answer sets, people, sessions and verdicts in one SQLite file.

WAL mode lets several annotators write at once while pages read; ``synchronous=FULL`` makes a
verdict durable before the server acknowledges it, so a crash (kill -9 included) loses none that a
person saw recorded. Login tokens and session tokens are stored only as SHA-256 hashes.

A verdict records what the person saw: ``label`` is ``A`` (left better), ``B`` (right better) or
``C`` (neither), and ``swapped`` says whether model B's answer was on the left. Undo marks a
verdict undone rather than deleting it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from limakit.core.errors import LimaError
from limakit.core.files import open_sqlite
from limakit.evaluation.pairs import PairSet

SESSION_DAYS = 14
MAX_ID = 2**63 - 1  # the largest SQLite integer: a larger id names no row (and cannot be bound)
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sets (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, a_path TEXT NOT NULL, b_path TEXT NOT NULL,
    a_model TEXT NOT NULL, b_model TEXT NOT NULL, only_a INTEGER NOT NULL, only_b INTEGER NOT NULL,
    created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (
    id INTEGER PRIMARY KEY, set_id INTEGER NOT NULL REFERENCES sets(id), position INTEGER NOT NULL,
    prompt_id TEXT NOT NULL, sample INTEGER NOT NULL, category TEXT NOT NULL, prompt TEXT NOT NULL,
    answer_a TEXT NOT NULL, answer_b TEXT NOT NULL, UNIQUE (set_id, prompt_id, sample));
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, admin INTEGER NOT NULL DEFAULT 0,
    token_hash TEXT, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    hash TEXT PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), csrf TEXT NOT NULL,
    expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS verdicts (
    id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
    pair_id INTEGER NOT NULL REFERENCES pairs(id), swapped INTEGER NOT NULL,
    label TEXT NOT NULL CHECK (label IN ('A', 'B', 'C')), comment TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL, undone TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS one_live_verdict ON verdicts (user_id, pair_id)
    WHERE undone IS NULL;
"""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    admin: bool
    csrf: str = ""


@dataclass(frozen=True)
class SetInfo:
    id: int
    name: str
    a_model: str
    b_model: str
    a_path: str
    b_path: str
    pairs: int
    only_a: int
    only_b: int


@dataclass(frozen=True)
class ShownPair:
    """A pair as one annotator sees it: ``left``/``right`` after the (recorded) side swap."""

    id: int
    position: int
    prompt_id: str
    sample: int
    prompt: str
    left: str
    right: str
    swapped: bool


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def connect(path: str | os.PathLike, *, create: bool = False) -> sqlite3.Connection:
    """Open the database (WAL, durable commits); ``create`` makes it (or its tables) when missing."""
    path = Path(path)
    if not create and not path.exists():
        raise LimaError(
            f"{path}: no annotation database; make one with "
            f"`lima annotate serve --a A.jsonl --b B.jsonl --db {path}`"
        )
    try:
        conn = open_sqlite(path, durable=True, timeout=10, isolation_level=None)
    except sqlite3.DatabaseError as e:
        raise LimaError(f"{path}: not an annotation database ({e})") from None
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA foreign_keys=ON")
        if create:
            conn.executescript(SCHEMA)
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('seed', ?)",
                (str(secrets.randbits(31)),),
            )
        else:  # per-request connections write nothing until a verdict comes
            conn.execute("SELECT 1 FROM verdicts LIMIT 0")
    except sqlite3.DatabaseError as e:
        conn.close()
        raise LimaError(f"{path}: not an annotation database ({e})") from None
    return conn


def seed(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT value FROM meta WHERE key = 'seed'").fetchone()[0])


def swapped_for(seed_value: int, user: str, set_name: str, prompt_id: str, sample: int) -> bool:
    """Whether model B's answer goes on the left for this person and pair (stable, seeded)."""
    key = f"{seed_value}\0{user}\0{set_name}\0{prompt_id}\0{sample}".encode()
    return bool(hashlib.sha256(key).digest()[0] & 1)


# --- sets ---------------------------------------------------------------------------------------


def add_set(conn: sqlite3.Connection, ps: PairSet, name: str | None = None) -> SetInfo:
    """Store a pair set under ``name`` (default "A-model vs B-model"); reloading it is a no-op.

    A set of that name holding other answers is an error: verdicts already given refer to them.
    """
    name = name or f"{ps.a_model} vs {ps.b_model}"
    rows = [
        (i, p.id, p.sample, p.category, p.prompt, p.answer_a, p.answer_b)
        for i, p in enumerate(ps.pairs)
    ]
    old = conn.execute("SELECT id FROM sets WHERE name = ?", (name,)).fetchone()
    if old is not None:
        stored = conn.execute(
            "SELECT position, prompt_id, sample, category, prompt, answer_a, answer_b FROM pairs "
            "WHERE set_id = ? ORDER BY position",
            (old["id"],),
        ).fetchall()
        if [tuple(r) for r in stored] != rows:
            raise LimaError(
                f"set {name!r} already holds other answers; give the new files another --name"
            )
        return get_set(conn, old["id"])
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        cur = conn.execute(
            "INSERT INTO sets (name, a_path, b_path, a_model, b_model, only_a, only_b, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                name,
                ps.a_path,
                ps.b_path,
                ps.a_model,
                ps.b_model,
                len(ps.only_a),
                len(ps.only_b),
                now(),
            ),
        )
        set_id = cur.lastrowid
        conn.executemany(
            "INSERT INTO pairs (set_id, position, prompt_id, sample, category, prompt, answer_a, "
            "answer_b) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(set_id, *r) for r in rows],
        )
    return get_set(conn, set_id)


def _set(row: sqlite3.Row) -> SetInfo:
    return SetInfo(
        row["id"], row["name"], row["a_model"], row["b_model"], row["a_path"], row["b_path"],
        row["n"], row["only_a"], row["only_b"],
    )  # fmt: skip


def list_sets(conn: sqlite3.Connection) -> list[SetInfo]:
    rows = conn.execute(
        "SELECT s.*, (SELECT COUNT(*) FROM pairs p WHERE p.set_id = s.id) AS n FROM sets s "
        "ORDER BY s.id"
    ).fetchall()
    return [_set(r) for r in rows]


def get_set(conn: sqlite3.Connection, set_id: int) -> SetInfo | None:
    return next((s for s in list_sets(conn) if s.id == set_id), None)


def find_set(conn: sqlite3.Connection, name: str | None, db_path) -> SetInfo:
    """The set called ``name``, or the only set when no name is given; errors list the names."""
    sets = list_sets(conn)
    names = ", ".join(repr(s.name) for s in sets) or "none"
    if name is None:
        if len(sets) != 1:
            raise LimaError(f"{db_path}: holds {len(sets)} sets ({names}); choose one with --set")
        return sets[0]
    for s in sets:
        if s.name == name:
            return s
    raise LimaError(f"{db_path}: no set {name!r} (sets: {names})")


# --- people and sessions ------------------------------------------------------------------------


def add_user(conn: sqlite3.Connection, name: str, *, admin: bool = False) -> str:
    """Create a person (or issue a new login token to one); return the one-time token."""
    name = name.strip()
    if not name or len(name) > 64 or not name.isprintable():
        raise LimaError(f"user name {name!r}: use 1-64 printable characters")
    token = secrets.token_urlsafe(24)
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO users (name, admin, token_hash, created) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash, "
            "admin = MAX(admin, excluded.admin)",
            (name, int(admin), _hash(token), now()),
        )
    return token


def login(conn: sqlite3.Connection, token: str) -> str | None:
    """Spend a one-time token; return a new session token, or None for an unknown/used token."""
    session = secrets.token_urlsafe(32)
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute("SELECT id FROM users WHERE token_hash = ?", (_hash(token),)).fetchone()
        if row is None:
            return None
        conn.execute("UPDATE users SET token_hash = NULL WHERE id = ?", (row["id"],))
        conn.execute(
            "INSERT INTO sessions (hash, user_id, csrf, expires) VALUES (?, ?, ?, ?)",
            (
                _hash(session),
                row["id"],
                secrets.token_urlsafe(24),
                time.time() + SESSION_DAYS * 86400,
            ),
        )
    return session


def session_user(conn: sqlite3.Connection, session: str | None) -> User | None:
    if not session:
        return None
    row = conn.execute(
        "SELECT u.id, u.name, u.admin, s.csrf FROM sessions s JOIN users u ON u.id = s.user_id "
        "WHERE s.hash = ? AND s.expires > ?",
        (_hash(session), time.time()),
    ).fetchone()
    return None if row is None else User(row["id"], row["name"], bool(row["admin"]), row["csrf"])


def logout(conn: sqlite3.Connection, session: str) -> None:
    conn.execute("DELETE FROM sessions WHERE hash = ?", (_hash(session),))


# --- verdicts -----------------------------------------------------------------------------------


def progress(conn: sqlite3.Connection, user_id: int, set_id: int) -> int:
    return conn.execute(
        "SELECT COUNT(*) FROM verdicts v JOIN pairs p ON p.id = v.pair_id "
        "WHERE v.user_id = ? AND p.set_id = ? AND v.undone IS NULL",
        (user_id, set_id),
    ).fetchone()[0]


def next_pair(conn: sqlite3.Connection, user: User, s: SetInfo) -> ShownPair | None:
    """The first pair (file order) this person has no live verdict on, sides as they see them."""
    row = conn.execute(
        "SELECT * FROM pairs p WHERE p.set_id = ? AND NOT EXISTS (SELECT 1 FROM verdicts v "
        "WHERE v.pair_id = p.id AND v.user_id = ? AND v.undone IS NULL) ORDER BY p.position LIMIT 1",
        (s.id, user.id),
    ).fetchone()
    if row is None:
        return None
    swap = swapped_for(seed(conn), user.name, s.name, row["prompt_id"], row["sample"])
    left, right = (row["answer_b"], row["answer_a"]) if swap else (row["answer_a"], row["answer_b"])
    return ShownPair(
        row["id"],
        row["position"],
        row["prompt_id"],
        row["sample"],
        row["prompt"],
        left,
        right,
        swap,
    )


def record(
    conn: sqlite3.Connection, user: User, s: SetInfo, pair_id: int, label: str, comment: str
) -> int | None:
    """Store a verdict on the pair as shown to ``user``; None when it already has a live one."""
    if label not in ("A", "B", "C"):
        raise ValueError(f"label {label!r}")
    if not 1 <= pair_id <= MAX_ID:
        raise KeyError(pair_id)
    row = conn.execute(
        "SELECT prompt_id, sample FROM pairs WHERE id = ? AND set_id = ?", (pair_id, s.id)
    ).fetchone()
    if row is None:
        raise KeyError(pair_id)
    swap = swapped_for(seed(conn), user.name, s.name, row["prompt_id"], row["sample"])
    try:
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            cur = conn.execute(
                "INSERT INTO verdicts (user_id, pair_id, swapped, label, comment, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (user.id, pair_id, int(swap), label, comment, now()),
            )
    except sqlite3.IntegrityError:
        return None
    return cur.lastrowid


def undo_last(conn: sqlite3.Connection, user: User, s: SetInfo) -> int | None:
    """Mark this person's latest live verdict in the set undone; return its pair id."""
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute(
            "SELECT v.id, v.pair_id FROM verdicts v JOIN pairs p ON p.id = v.pair_id "
            "WHERE v.user_id = ? AND p.set_id = ? AND v.undone IS NULL ORDER BY v.id DESC LIMIT 1",
            (user.id, s.id),
        ).fetchone()
        if row is None:
            return None
        conn.execute("UPDATE verdicts SET undone = ? WHERE id = ?", (now(), row["id"]))
    return row["pair_id"]


def live_verdicts(
    conn: sqlite3.Connection, set_id: int, user_id: int | None = None
) -> list[sqlite3.Row]:
    """Live verdicts of a set (of one person when ``user_id`` is given), in pair then name order."""
    sql = (
        "SELECT v.id, v.label, v.swapped, v.comment, v.created, u.name AS annotator, "
        "p.prompt_id, p.sample, p.category, p.position, length(p.answer_a) AS len_a, "
        "length(p.answer_b) AS len_b "
        "FROM verdicts v JOIN pairs p ON p.id = v.pair_id JOIN users u ON u.id = v.user_id "
        "WHERE p.set_id = ? AND v.undone IS NULL"
    )
    args: list = [set_id]
    if user_id is not None:
        sql += " AND v.user_id = ?"
        args.append(user_id)
    return conn.execute(sql + " ORDER BY p.position, u.name", args).fetchall()


def verdict_of(conn: sqlite3.Connection, verdict_id: int, user_id: int) -> sqlite3.Row | None:
    """One live verdict, only if it belongs to ``user_id`` (people never see each other's)."""
    if not 1 <= verdict_id <= MAX_ID:
        return None
    return conn.execute(
        "SELECT v.id, v.label, v.comment, v.created, p.prompt_id, p.sample, p.set_id "
        "FROM verdicts v JOIN pairs p ON p.id = v.pair_id "
        "WHERE v.id = ? AND v.user_id = ? AND v.undone IS NULL",
        (verdict_id, user_id),
    ).fetchone()


def annotator_progress(conn: sqlite3.Connection, set_id: int) -> list[tuple[str, int]]:
    rows = conn.execute(
        "SELECT u.name, COUNT(v.id) AS n FROM users u LEFT JOIN verdicts v ON v.user_id = u.id "
        "AND v.undone IS NULL AND v.pair_id IN (SELECT id FROM pairs WHERE set_id = ?) "
        "WHERE u.admin = 0 GROUP BY u.id ORDER BY u.name",
        (set_id,),
    ).fetchall()
    return [(r["name"], r["n"]) for r in rows]
