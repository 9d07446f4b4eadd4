"""A small Markdown -> reStructuredText converter for the Markdown this repository writes.

It handles what CHANGELOG.md, the notebooks' markdown cells and the checked number blocks of
``benchmarks/readme_numbers.py`` use: ATX headings, paragraphs, ``*``/``-``/numbered lists with
indented continuation lines, pipe tables (-> ``list-table``), fenced and indented code blocks,
inline code, bold/italic, links and bare ``<!-- -->`` comments. Anything else passes through as
text; the strict Sphinx build then says where.
"""

from __future__ import annotations

import re

_HEADINGS = "=-~^\""


def inline(text: str) -> str:
    """Inline Markdown -> reST: code spans (escaped where they touch a word), links; emphasis
    (``*x*``, ``**x**``) reads alike in both."""
    parts, pos = [], 0
    for m in re.finditer(r"`([^`]+)`", text):
        parts.append(("text", text[pos:m.start()]))
        parts.append(("code", m.group(1).strip()))
        pos = m.end()
    parts.append(("text", text[pos:]))
    out = ""
    for k, (kind, s) in enumerate(parts):
        if kind == "text":
            out += _links(s)
            continue
        if out and re.match(r"[\w)\]]", out[-1]):
            out += "\\ "
        out += f"``{s}``"
        nxt = parts[k + 1][1] if k + 1 < len(parts) else ""
        if nxt and re.match(r"[\w(]", nxt[0]):
            out += "\\ "
    return out


def _links(text: str) -> str:
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", lambda m: f"`{m.group(1)} <{m.group(2)}>`__", text)


def _table(rows: list[str]) -> list[str]:
    cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
    header, body = cells[0], [c for c in cells[2:]]
    width = len(header)
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header] + body:
        row = (row + [""] * width)[:width]
        for i, c in enumerate(row):
            lines.append(("   * - " if i == 0 else "     - ") + (inline(c) or ".."))
    return lines + [""]


def convert(md: str, level_offset: int = 0) -> str:
    """The reST text of the Markdown ``md``; heading level ``#`` becomes the
    ``level_offset``-th underline character of ``=-~^"``."""
    lines = md.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("<!--") and stripped.endswith("-->"):
            i += 1
            continue
        if stripped.startswith("```"):
            lang = stripped[3:].strip() or "text"
            j = i + 1
            block = []
            while j < len(lines) and not lines[j].strip().startswith("```"):
                block.append(lines[j])
                j += 1
            out += ["", f".. code-block:: {lang}", ""] + ["   " + b if b else "" for b in block] + [""]
            i = j + 1
            continue
        m = re.match(r"^(#{1,6})\s+(.*)$", line)
        if m:
            title = inline(m.group(2).strip())
            ch = _HEADINGS[min(len(m.group(1)) - 1 + level_offset, len(_HEADINGS) - 1)]
            out += ["", title, ch * max(len(title), 3), ""]
            i += 1
            continue
        if stripped.startswith("|") and i + 1 < len(lines) and re.match(r"^\s*\|[\s:|-]+\|\s*$", lines[i + 1]):
            j = i
            rows = []
            while j < len(lines) and lines[j].strip().startswith("|"):
                rows.append(lines[j])
                j += 1
            out += [""] + _table(rows)
            i = j
            continue
        if line.startswith("    ") and (not out or out[-1] == ""):
            j = i
            block = []
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                block.append(lines[j][4:])
                j += 1
            while block and not block[-1].strip():
                block.pop()
            out += ["::", ""] + ["   " + b if b else "" for b in block] + [""]
            i = j
            continue
        lm = re.match(r"^(\s*)([*-]|\d+\.)\s+(.*)$", line)
        if lm:
            if out and out[-1] != "" and not re.match(r"^\s*([*-]|\d+\.)\s", lines[i - 1]) and not lines[i - 1].startswith(" "):
                out.append("")
            bullet = "*" if lm.group(2) in "*-" else "#."
            indent = lm.group(1)
            out.append(f"{indent}{bullet} {inline(lm.group(3))}")
            pad = indent + " " * (len(bullet) + 1)
            i += 1
            while i < len(lines) and lines[i].startswith("  ") and lines[i].strip() and \
                    not re.match(r"^\s*([*-]|\d+\.)\s", lines[i]):
                out.append(pad + inline(lines[i].strip()))
                i += 1
            continue
        out.append(inline(line))
        i += 1
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
