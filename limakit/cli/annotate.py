"""``lima annotate``: the human study (serve, add-user, export) and Label Studio / Argilla files."""

from __future__ import annotations

import argparse
import sys


def _db(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--db", required=required, help="annotation database (SQLite; created by `serve`)"
    )


EXPORT_HELP = {
    "labelstudio": "the Label Studio export file: JSON (cancelled answers are counted under "
    "'skipped') or JSON-MIN (read too, but Label Studio leaves cancelled answers out of it)",
    "argilla": "the Argilla records export file (JSON)",
}
IMPORT_HELP = {
    "labelstudio": "Read a Label Studio project export (JSON or JSON-MIN) with the mapping "
    "written by export-labelstudio. Annotators are named by the email the export carries (a "
    "snapshot export with annotations__completed_by expanded, see the README), else "
    "labelstudio-<user id>.",
    "argilla": "Read an Argilla records export with the mapping written by export-argilla.",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "annotate", help="the human study: a web app for blinded pairwise annotation"
    )
    asub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    q = asub.add_parser(
        "serve", help="serve the annotation app (pairs matched as `lima judge pairwise` does)"
    )
    q.add_argument("--a", help="answers of model A (.jsonl); with --b, adds a set to the database")
    q.add_argument("--b", help="answers of model B (.jsonl)")
    q.add_argument(
        "--name", help="name of the set made from --a/--b (default: 'MODEL-A vs MODEL-B')"
    )
    _db(q)
    q.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only)",
    )
    q.add_argument(
        "--port",
        type=int,
        default=8000,
        help="port to listen on (default 8000; 0 picks a free one)",
    )
    q.add_argument(
        "--secure-cookies",
        action="store_true",
        help="mark cookies Secure (HTTPS only): use when a proxy serves the app over HTTPS",
    )
    q.set_defaults(func=run_serve)

    q = asub.add_parser(
        "add-user", help="add a person (or renew their link): prints a one-time login link"
    )
    q.add_argument("name", help="the person's name (shown in exports as 'annotator')")
    _db(q)
    q.add_argument(
        "--admin", action="store_true", help="may see everyone's progress and their agreement"
    )
    q.add_argument(
        "--url",
        default="http://127.0.0.1:8000",
        help="the address people reach the server at (default http://127.0.0.1:8000)",
    )
    q.set_defaults(func=run_add_user)

    q = asub.add_parser(
        "export",
        help="write the verdicts in the LLM judge's format (verdicts.jsonl + summary.json)",
    )
    _db(q)
    q.add_argument(
        "--out",
        required=True,
        help="verdicts file (.jsonl; summary.json is written beside it) or a folder for both",
    )
    q.add_argument("--set", help="which set (needed when the database holds several)")
    q.set_defaults(func=run_export)

    for tool, what, a_what in (
        ("labelstudio", "Label Studio", "a Label Studio"),
        ("argilla", "Argilla", "an Argilla"),
    ):
        q = asub.add_parser(
            f"export-{tool}", help=f"write {a_what} project for the pairs of --a and --b"
        )
        q.add_argument("--a", required=True, help="answers of model A (.jsonl)")
        q.add_argument("--b", required=True, help="answers of model B (.jsonl)")
        q.add_argument(
            "--out",
            required=True,
            help=f"folder for the {what} files and the A/B mapping kept by limakit",
        )
        q.add_argument(
            "--seed", type=int, default=0, help="seed of the side swap per pair (default 0)"
        )
        q.set_defaults(func=run_export_tool, tool=tool)

        q = asub.add_parser(
            f"import-{tool}",
            help=f"turn {a_what} export into verdicts in the judge's format",
            description=IMPORT_HELP[tool],
        )
        q.add_argument("export", help=EXPORT_HELP[tool])
        q.add_argument(
            "--mapping",
            required=True,
            help=f"mapping.jsonl written by `lima annotate export-{tool}`",
        )
        q.add_argument(
            "--out",
            required=True,
            help="verdicts file (.jsonl; summary.json beside it) or a folder for both",
        )
        q.set_defaults(func=run_import_tool, tool=tool)


def run_serve(args: argparse.Namespace) -> int:
    from limakit.annotate.server import load_set, serve
    from limakit.core.errors import LimaError

    if bool(args.a) != bool(args.b):
        raise LimaError("give both --a and --b (or neither, to serve the sets already loaded)")
    if args.a:
        s, only_a, only_b = load_set(args.db, args.a, args.b, args.name)
        print(f"set {s.name!r}: {s.pairs} pairs in {args.db}", file=sys.stderr)
        if only_a or only_b:
            print(
                f"warning: {only_a} answers only in {args.a}, {only_b} only in {args.b} (not shown)",
                file=sys.stderr,
            )
    serve(
        args.db,
        args.host,
        args.port,
        secure_cookies=args.secure_cookies,
        on_listening=lambda url: print(f"serving on {url}", flush=True),
    )
    return 0


def run_add_user(args: argparse.Namespace) -> int:
    from limakit.annotate import db

    conn = db.connect(args.db, create=True)
    try:
        token = db.add_user(conn, args.name, admin=args.admin)
    finally:
        conn.close()
    role = "admin" if args.admin else "annotator"
    print(f"{role} {args.name!r}: this link signs in once (send it privately)", file=sys.stderr)
    print(f"{args.url.rstrip('/')}/login?token={token}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from limakit.annotate.export import export

    path, s = export(args.db, args.out, args.set)
    _print_summary(path, s)
    return 0


def _print_summary(path, s: dict) -> None:
    people = ", ".join(f"{k} {v}" for k, v in s["annotators"].items()) or "nobody yet"
    print(
        f"{s['a']['model']} vs {s['b']['model']}: {s['verdicts']} verdicts on {s['n']} of "
        f"{s['pairs']} pairs ({people})"
    )
    for key in ("win", "tie", "lose"):
        lo, hi = s[f"{key}_ci"]
        print(f"  {key:5s}{100 * s[key]:5.1f}%  [{100 * lo:.1f}, {100 * hi:.1f}]")
    ag = s["agreement"]
    if ag["comparisons"]:
        print(
            f"  agreement between annotators: {100 * ag['accuracy']:.1f}% tie-discounted, "
            f"kappa {ag['kappa']:.2f} ({ag['comparisons']} comparisons)"
        )
    if s.get("skipped"):
        print("  skipped: " + ", ".join(f"{k} {v}" for k, v in s["skipped"].items()))
    print(f"wrote {path} and {path.parent / 'summary.json'}", file=sys.stderr)


def run_export_tool(args: argparse.Namespace) -> int:
    from limakit.annotate import interop

    fn = interop.export_labelstudio if args.tool == "labelstudio" else interop.export_argilla
    written = fn(args.a, args.b, args.out, seed=args.seed)
    for path in written:
        print(f"wrote {path}")
    return 0


def run_import_tool(args: argparse.Namespace) -> int:
    from limakit.annotate import interop

    fn = interop.import_labelstudio if args.tool == "labelstudio" else interop.import_argilla
    path, s = fn(args.export, args.mapping, args.out)
    _print_summary(path, s)
    return 0
