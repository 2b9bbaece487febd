"""The token-distribution shift shown: a page with every answer token coloured by its class and
the base's first choice on hover, the shifted share by position as an SVG plot, and the Markdown
lines a report includes. The page is one file without external assets: it opens offline.

>>> "<svg" in position_svg({"base": "b", "files": []})
True
"""

from __future__ import annotations

import html
from pathlib import Path

from limakit.core.files import atomic_write

COLOURS = {"unshifted": "#ffffff", "marginal": "#fde68a", "shifted": "#fca5a5", "apart": "#cbd5e0"}
SERIES = ("#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#718096")
SHOWN = 40  # answers shown per file (the rest are in tokens.jsonl)
RETOKENISED = (
    "{k} of {n} answers do not give back, as text, the tokens that were generated (the model "
    "wrote whitespace at an end, which answers are stripped of, or special tokens, which they "
    "leave out): from there on, what is ranked is not exactly what the model saw"
)
# URIAL's shifted shares: greedy answers of each aligned model against its base (Lin et al. 2023).
URIAL_SHIFTED = {
    "Llama-2-7b-chat vs Llama-2-7b": 0.078,
    "Vicuna-7b-v1.5 vs Llama-2-7b": 0.048,
    "Mistral-7b-instruct vs Mistral-7b": 0.052,
}


def position_svg(summary: dict, width: int = 520, height: int = 260) -> str:
    """Grouped bars: the shifted share at answer positions 1-10, 11-50, 51+, one bar per answers
    file, with its 95% interval."""
    files = summary["files"]
    spans = [p["span"] for p in files[0]["positions"]] if files else []
    left, bottom, top = 48, 40, 24
    plot_h = height - bottom - top
    tallest = max([p["shifted"]["ci"][1] for f in files for p in f["positions"]
                   if p["shifted"]["ci"]] + [0.1])  # fmt: skip
    ymax = min(1.0, round(tallest * 1.2 + 0.005, 2))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11" role="img" '
             f'aria-label="shifted share by answer position">']  # fmt: skip

    def y(v: float) -> float:
        return top + plot_h * (1 - v / ymax)

    for k in range(5):
        v = ymax * k / 4
        parts.append(f'<line x1="{left}" x2="{width - 8}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                     f'stroke="#e2e8f0"/><text x="{left - 4}" y="{y(v) + 4:.1f}" '
                     f'text-anchor="end">{100 * v:.0f}%</text>')  # fmt: skip
    group = (width - left - 8) / max(len(spans), 1)
    bar = group * 0.7 / max(len(files), 1)
    for g, span in enumerate(spans):
        x0 = left + g * group + group * 0.15
        parts.append(f'<text x="{x0 + group * 0.35:.1f}" y="{height - bottom + 16}" '
                     f'text-anchor="middle">tokens {span}</text>')  # fmt: skip
        for i, f in enumerate(files):
            m = f["positions"][g]["shifted"]
            if m["value"] is None:
                continue
            x, colour = x0 + i * bar, SERIES[i % len(SERIES)]
            tip = html.escape(f"{f['model']}, tokens {span}: {100 * m['value']:.1f}% shifted "
                              f"(n = {m['n']} answers)")  # fmt: skip
            parts.append(f'<rect x="{x:.1f}" y="{y(m["value"]):.1f}" width="{bar * 0.9:.1f}" '
                         f'height="{y(0) - y(m["value"]):.1f}" fill="{colour}">'
                         f"<title>{tip}</title></rect>")  # fmt: skip
            if m["ci"]:
                cx = x + bar * 0.45
                parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(m["ci"][0]):.1f}" '
                             f'y2="{y(m["ci"][1]):.1f}" stroke="#1a202c"/>')  # fmt: skip
    for i, f in enumerate(files):
        parts.append(f'<rect x="{left + 140 * i}" y="{height - 14}" width="10" height="10" '
                     f'fill="{SERIES[i % len(SERIES)]}"/><text x="{left + 140 * i + 14}" '
                     f'y="{height - 5}">{html.escape(str(f["model"])[:20])}</text>')  # fmt: skip
    parts.append(f'<text x="{left}" y="14">shifted share (rank &gt; 3 under '
                 f"{html.escape(summary['base'])}), 95% CI</text></svg>")  # fmt: skip
    return "".join(parts)


def _token(t: dict) -> str:
    rank = "not in the base's vocabulary" if t["rank"] is None else f"rank {t['rank']}"
    tip = f"{rank}; the base's first choice: {t['base']!r}"
    text = html.escape(t["token"]).replace("\n", "↵<br>")
    return (f'<span class="{t["class"]}" title="{html.escape(tip)}">{text}</span>')  # fmt: skip


def write_page(path: str | Path, summary: dict, rows: list[dict]) -> None:
    """``shift.html``: the figures, the plot and the first answers of each file, token by token."""
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;line-height:1.5}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
             ".answer{font-family:monospace;white-space:pre-wrap;border:1px solid #e2e8f0;"
             "padding:8px;margin:6px 0 18px}.prompt{color:#4a5568;font-size:90%}"
             + "".join(f".{c}{{background:{v}}}" for c, v in COLOURS.items())
             + ".unshifted{background:none}")  # fmt: skip
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>Token shift against "
           f"{html.escape(summary['base'])}</title><style>{style}</style></head><body>",
           f"<h1>Token-distribution shift against {html.escape(summary['base'])}</h1>",
           "<p>Each answer token, ranked by the base model given the same context: "
           "<span class='unshifted'>unshifted</span> (its first choice), "
           "<span class='marginal'>marginal</span> (2nd or 3rd), "
           "<span class='shifted'>shifted</span> (lower), "
           "<span class='apart'>apart</span> (a token the base's vocabulary lacks). "
           "Hover a token for its rank and the base's choice.</p>",
           "<table><tr><th>answers</th><th>decoding</th><th>answers n</th><th>tokens</th>"
           "<th>unshifted</th><th>marginal</th><th>shifted</th></tr>"]  # fmt: skip
    for f in summary["files"]:
        cells = [f["model"], f["decoding"], f["n"], f["tokens"],
                 *(_pct(f[c]) for c in ("unshifted", "marginal", "shifted"))]  # fmt: skip
        out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    out += [f"<p><b>{html.escape(f['model'])}</b>: {html.escape(f['note'])}</p>"
            for f in summary["files"] if f["note"]]  # fmt: skip
    out += [f"<p><b>{html.escape(f['model'])}</b>: "
            f"{html.escape(RETOKENISED.format(k=f['retokenised'], n=f['n']))}</p>"
            for f in summary["files"] if f["retokenised"]]  # fmt: skip
    out.append(position_svg(summary))
    for f in summary["files"]:
        mine = [r for r in rows if r["answers"] == f["answers"]]
        out.append(f"<h2>{html.escape(f['model'])} ({html.escape(f['answers'])})</h2>")
        if len(mine) > SHOWN:
            out.append(f"<p>The first {SHOWN} of {len(mine)} answers; all are in tokens.jsonl.</p>")
        for r in mine[:SHOWN]:
            prompt = r["prompt"] if len(r["prompt"]) <= 300 else r["prompt"][:300] + "..."
            out.append(f"<div class='prompt'>{html.escape(r['id'])} (sample {r['sample']}): "
                       f"{html.escape(prompt)}</div><div class='answer'>"
                       + "".join(_token(t) for t in r["tokens"]) + "</div>")  # fmt: skip
    out.append("</body></html>\n")
    with atomic_write(path) as fh:
        fh.write("\n".join(out))


def _pct(m: dict) -> str:
    if m["value"] is None or m["ci"] is None:
        return "-"
    return f"{100 * m['value']:.1f}% [{100 * m['ci'][0]:.1f}, {100 * m['ci'][1]:.1f}]"


def _code(token: str) -> str:
    """A token as inline Markdown code that stays on its line and in its table cell."""
    shown = token.replace("\n", "\\n").replace("\t", "\\t").replace("`", "'").replace("|", "\\|")
    return f"`{shown}`" if shown.strip() else f"`{shown!r}`"


def shift_lines(summary: dict, folder: str = "") -> list[str]:
    """Markdown: the shares with their intervals, the shifted share by position (with the plot,
    linked from ``folder``), the most shifted tokens, and URIAL's figures for comparison."""
    spans = [p["span"] for p in summary["files"][0]["positions"]] if summary["files"] else []
    lines = [f"Each answer token ranked by the base `{summary['base']}` given the same context "
             "(URIAL's token-distribution shift): unshifted = the base's first choice, marginal "
             "= its 2nd or 3rd, shifted = lower. Shares are means over answers with 95% "
             "bootstrap intervals.", "",
             "| answers | decoding | answers n | tokens | unshifted | marginal | shifted |",
             "|---|---|---:|---:|---|---|---|"]  # fmt: skip
    for f in summary["files"]:
        lines.append(f"| {f['model']} | {f['decoding']} | {f['n']} | {f['tokens']} | "
                     f"{_pct(f['unshifted'])} | {_pct(f['marginal'])} | {_pct(f['shifted'])} |")  # fmt: skip
    urial = ", ".join(f"{k} {100 * v:.1f}%" for k, v in URIAL_SHIFTED.items())
    lines += ["", f"URIAL's shifted shares (greedy answers against their base): {urial}.", ""]
    lines += [f"- {f['model']}: {f['note']}" for f in summary["files"] if f["note"]]
    lines += [f"- {f['model']}: {RETOKENISED.format(k=f['retokenised'], n=f['n'])}"
              for f in summary["files"] if f["retokenised"]]  # fmt: skip
    lines += [f"- {f['model']}: {sum(f['apart'].values())} token(s) the base lacks "
              f"({', '.join(f'{_code(t)} {n}' for t, n in f['apart'].items())}) counted apart"
              for f in summary["files"] if f["apart"]]  # fmt: skip
    lines += ["", f"![shifted share by position]({folder}shift_positions.svg)", "",
              "| answers | " + " | ".join(f"shifted, tokens {s}" for s in spans) + " |",
              "|---|" + "---|" * len(spans)]  # fmt: skip
    for f in summary["files"]:
        lines.append(f"| {f['model']} | "
                     + " | ".join(_pct(p["shifted"]) for p in f["positions"]) + " |")  # fmt: skip
    for f in summary["files"]:
        top = ", ".join(f"{_code(t['token'])} {t['count']} (base: {_code(t['base'])})"
                        for t in f["top_shifted"][:15])  # fmt: skip
        lines += ["", f"Most often shifted in {f['model']}: {top or 'none'}."]
    lines += ["", f"Every token, coloured by class: [shift.html]({folder}shift.html).", ""]
    return lines
