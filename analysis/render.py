"""report.html from its Jinja2 template: the environment (the packaged template, or the user's
--template, which may extend it), the filters it uses, and the claims as the template sees them.

Kept apart from analysis.report (which computes and writes everything) so that restyling the
page never touches the numbers.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any

from analysis import verdicts
from trainables.errors import UserError

TEMPLATE = "report.html.j2"
VERDICT_CLASS = {verdicts.HOLDS: "holds", verdicts.PARTLY: "partly", verdicts.FAILS: "fails",
                 verdicts.UNTESTABLE: "untestable", verdicts.NOT_SHOWN: "untestable"}
CLAIM_BASE_FIELDS = ("key", "statement", "verdict", "evidence")


def environment(template: str | None):
    """Jinja2 environment: the packaged template, or --template (which may extend it)."""
    import jinja2

    loaders: list[jinja2.BaseLoader] = []
    if template is not None:
        path = Path(template)
        if not path.is_file():
            raise UserError(f"--template {template}: no such file")
        loaders.append(jinja2.FileSystemLoader(str(path.parent)))
    loaders.append(jinja2.PackageLoader("analysis", "templates"))
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["code"] = backticks_to_code
    return env


def trusted(html: str):
    """HTML built and escaped by the project's own code (e.g. analysis.external_logs), passed
    through the template unescaped."""
    from markupsafe import Markup

    return Markup(html)


def backticks_to_code(text: str):
    """Escape `text` for HTML and show its `backticked` parts as <code> (the console's
    messages mark commands that way)."""
    from markupsafe import Markup, escape

    parts = str(text).split("`")
    return Markup("".join(f"<code>{escape(p)}</code>" if i % 2 else str(escape(p))
                          for i, p in enumerate(parts)))


def _as_lines(value: Any) -> list[str]:
    """An extra claim field as text lines: objects with a text() method (per-architecture
    effects) by that method, sequences item by item, anything else by str()."""
    if isinstance(value, (list, tuple)):
        return [line for item in value for line in _as_lines(item)]
    text = getattr(value, "text", None)
    return [text() if callable(text) else str(value)]


def claims_context(claims: list[Any]) -> list[dict[str, Any]]:
    """Claims for the template: the contract's fields (key, statement, verdict, evidence) plus
    any extra fields a claim carries (e.g. per-architecture effects, the test used), each as
    (name, lines)."""
    out = []
    for c in claims:
        extras = []
        names = getattr(c, "__dataclass_fields__", None) or vars(c)
        for name in names:
            if name in CLAIM_BASE_FIELDS:
                continue
            value = getattr(c, name, None)
            if value is None or (isinstance(value, (str, list, tuple, dict)) and not value):
                continue
            extras.append((name.replace("_", " "), _as_lines(value)))
        evidence = str(c.evidence).rstrip(". ")  # the template ends the sentence
        out.append({"key": c.key, "statement": c.statement, "verdict": c.verdict,
                    "css": VERDICT_CLASS.get(c.verdict, "untestable"),
                    "evidence": evidence[:1].upper() + evidence[1:], "extras": extras})
    return out


def data_uri(path: Path) -> str:
    """A PNG as a data URI: report.html embeds its figures and stays one self-contained file."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def figure_html(path: Path, alt: str) -> str:
    """An embedded figure for the HTML the project builds itself (passed through `trusted`)."""
    return f'<figure><img alt="{escape(alt)}" src="{data_uri(path)}"></figure>\n'
