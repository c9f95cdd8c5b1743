"""Invoices and credit notes rendered from jinja2 templates to HTML and, through fpdf2, to PDF.

A site overrides `invoice.html` / `invoice_pdf.html` by putting its own in `billing.templates`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from fpdf import FPDF
from jinja2 import ChainableUndefined, ChoiceLoader, FileSystemLoader, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment

from plugins.billing.money import dec, round_money

DEFAULT_TEMPLATES = Path(__file__).parent / "templates"
HTML_TEMPLATE = "invoice.html"
PDF_TEMPLATE = "invoice_pdf.html"
_FONT = "DejaVu"


def _money(value: Any, currency: str = "") -> str:
    amount = dec(value)
    if currency:
        amount = round_money(amount, currency)
    text = f"{amount:,f}"
    return f"{text} {currency}".strip()


def _number(value: Any, places: int = 3) -> str:
    return f"{dec(value).quantize(Decimal(1).scaleb(-places)):f}"


def _day(value: Any) -> str:
    return date.fromisoformat(str(value)[:10]).strftime("%d.%m.%Y")


class Renderer:
    """Renders with the site's templates first, then the defaults shipped with the plugin.

    Templates are trusted configuration, but run sandboxed all the same: a template reads the
    invoice document it is given and nothing else.
    """

    def __init__(self, template_dir: Path | None = None, font_dir: Path | None = None) -> None:
        loaders = [FileSystemLoader(str(template_dir))] if template_dir else []
        loaders.append(FileSystemLoader(str(DEFAULT_TEMPLATES)))
        self.env = ImmutableSandboxedEnvironment(
            loader=ChoiceLoader(loaders),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=ChainableUndefined,
        )
        self.env.filters.update(money=_money, number=_number, day=_day)
        self.font_dir = font_dir or _dejavu_dir()

    def html(self, doc: Mapping[str, Any]) -> str:
        return self.env.get_template(HTML_TEMPLATE).render(doc=doc, **_titles(doc))

    def pdf(self, doc: Mapping[str, Any]) -> bytes:
        """The PDF of a document (blocking, some 100 ms: run it in an executor)."""
        markup = self.env.get_template(PDF_TEMPLATE).render(doc=doc, **_titles(doc))
        pdf = FPDF(format="A4")
        pdf.set_title(f"{_titles(doc)['title']} {doc['number']}")
        pdf.set_author(str(doc.get("issuer", {}).get("name", "")))
        pdf.set_creation_date(_creation(doc))
        family = "helvetica"
        if self.font_dir is not None:
            pdf.add_font(_FONT, "", str(self.font_dir / "DejaVuSans.ttf"))
            pdf.add_font(_FONT, "B", str(self.font_dir / "DejaVuSans-Bold.ttf"))
            family = _FONT
        else:
            # The core fonts know Latin-1 only; anything else would fail the whole document.
            markup = markup.encode("latin-1", "replace").decode("latin-1")
        pdf.add_page()
        pdf.set_font(family, size=9)
        pdf.write_html(markup, font_family=family)
        return bytes(pdf.output())


def _titles(doc: Mapping[str, Any]) -> dict[str, str]:
    credit = doc.get("kind") == "credit_note"
    return {"title": "Credit note" if credit else "Invoice"}


def _creation(doc: Mapping[str, Any]) -> datetime:
    # A fixed creation date (the issue date) makes the PDF of one document byte-for-byte stable.
    return datetime.combine(date.fromisoformat(doc["issued"]), time(0), tzinfo=UTC)


def _dejavu_dir() -> Path | None:
    """DejaVu Sans (Unicode: names, the euro sign) as matplotlib, a core dependency, ships it."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"
    ok = (folder / "DejaVuSans.ttf").is_file() and (folder / "DejaVuSans-Bold.ttf").is_file()
    return folder if ok else None
