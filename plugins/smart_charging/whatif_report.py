"""What `evhub plan` shows: a table per policy, the JSON metrics, and charts of the site's load
against its limit and the price (a PNG, and an HTML page with inline SVG and no scripts).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

from plugins.smart_charging.whatif import Scenario, site_limit_kw
from plugins.smart_charging.whatif_load import PolicyResult

_LOGGER = logging.getLogger(__name__)
COLORS = {
    "uncontrolled": "#d62728",
    "smart": "#2ca02c",
    "llf": "#ff7f0e",
    "greedy": "#9467bd",
    "offline": "#1f77b4",
}
_MORE_COLORS = ("#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")  # automations:NAME
_LABEL = 30  # width of the table's first column
_SHOWN = 5  # names listed per policy (not ready, no charger) before "and N more"


def _colors(results: Sequence[PolicyResult]) -> list[str]:
    """A colour per policy: the built-in ones fixed, the others (automation sets) in turn."""
    more = iter(_MORE_COLORS * len(results))
    return [COLORS.get(r.policy) or next(more) for r in results]


def _when(scenario: Scenario, t: datetime) -> str:
    return t.astimezone(scenario.tz).strftime("%a %d %b %H:%M")


def as_json(r: PolicyResult) -> dict[str, Any]:
    """One policy's metrics as `--json` writes them."""
    worst = r.worst
    return {
        "mode": "foresight" if r.foresight else "online",
        "peak_kw": {node: round(kw, 3) for node, kw in r.peak_kw.items()},
        "overloads": {
            "count": r.overloads,
            "worst": None
            if worst is None
            else {
                "node": worst.node,
                "phase": worst.phase,
                "time": worst.time.isoformat(),
                "load": round(worst.load, 3),
                "limit": worst.limit,
                "unit": worst.unit,
                "over_pct": round(worst.over_pct, 2),
            },
        },
        "energy_cost": round(r.energy_cost, 4),
        "demand_charge": round(r.demand_charge, 4),
        "total_cost": round(r.total_cost, 4),
        "energy_requested_kwh": round(r.energy_requested_kwh, 3),
        "energy_delivered_kwh": round(r.energy_delivered_kwh, 3),
        "vehicles_ready": r.vehicles_ready,
        "vehicles_total": r.vehicles_total,
        "not_ready": list(r.not_ready),
        "no_charger": list(r.no_charger),
        "plans": r.plans,
    }


def table(scenario: Scenario, results: Sequence[PolicyResult], *, source: str = "") -> str:
    """The report for a terminal: one column per policy."""
    sc, widths = scenario, [max(12, len(r.policy) + 2) for r in results]
    minutes = int(sc.step / timedelta(minutes=1))
    offset = sc.start.astimezone(sc.tz).strftime("%z")
    lines = [
        f"evhub plan: site {sc.site.id}, {_when(sc, sc.start)} to {_when(sc, sc.end)} "
        f"(UTC{offset[:3]}:{offset[3:]}), {len(sc.sessions)} sessions, {minutes}-minute steps, "
        f"{'foresight' if sc.foresight else 'online'}"
        + (f", last periods' peaks {_kws(sc.last_peaks_kw)} kW" if sc.last_peaks_kw else ""),
        f"prices: {source or sc.prices.source}; demand charge {sc.demand_charge:g} per kW of the "
        "period's highest 15-minute average",
        "",
        " " * _LABEL + "".join(f"{r.policy:>{w}}" for r, w in zip(results, widths, strict=True)),
    ]

    def row(label: str, cells: Sequence[str]) -> None:
        lines.append(
            f"{label:<{_LABEL}}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
        )

    for i, node in enumerate(results[0].peak_kw if results else ()):
        row(("peak kW (15-min)  " if i == 0 else "                  ") + node,
            [f"{r.peak_kw[node]:.1f}" for r in results])  # fmt: skip
    row("overloads (step x node x phase)", [str(r.overloads) for r in results])
    row("worst overload, % over", [f"{r.worst.over_pct:.1f}" if r.worst else "-" for r in results])
    row("energy cost", [f"{r.energy_cost:.2f}" for r in results])
    row("demand charge", [f"{r.demand_charge:.2f}" for r in results])
    row("total cost", [f"{r.total_cost:.2f}" for r in results])
    row("energy requested kWh", [f"{r.energy_requested_kwh:.1f}" for r in results])
    row("energy delivered kWh", [f"{r.energy_delivered_kwh:.1f}" for r in results])
    row("vehicles ready at departure", [f"{r.vehicles_ready}/{r.vehicles_total}" for r in results])
    row("vehicles with no charger", [str(len(r.no_charger)) for r in results])
    lines.append("")
    for r in results:
        if r.worst is not None:
            w = r.worst
            lines.append(
                f"{r.policy}: worst overload {w.node} {w.phase} {w.load:.1f} {w.unit} on a "
                f"{w.limit:g} {w.unit} limit ({w.over_pct:.1f} % over) at {_when(sc, w.time)}"
            )
        for what, names in (("not ready at departure", r.not_ready), ("no charger", r.no_charger)):
            if names:
                more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
                lines.append(f"{r.policy}: {what}: {', '.join(names[:_SHOWN])}{more}")
    return "\n".join(lines).rstrip() + "\n"


# --- charts ---------------------------------------------------------------------------------
def write_charts(prefix: Path, scenario: Scenario, results: Sequence[PolicyResult]) -> list[Path]:
    """PREFIX.png (when matplotlib is installed) and PREFIX.html; returns the files written."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    page = prefix.with_name(prefix.name + ".html")
    page.write_text(_html(scenario, results))
    written = [page]
    picture = prefix.with_name(prefix.name + ".png")
    try:
        _png(picture, scenario, results)
        written.insert(0, picture)
    except ImportError:
        _LOGGER.warning("matplotlib is not installed: no PNG, only %s", page)
    return written


def _png(path: Path, scenario: Scenario, results: Sequence[PolicyResult]) -> None:
    import matplotlib  # imported here: a second's start-up only for those who ask for a chart

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    sc = scenario
    times = [sc.start + k * sc.step for k in range(sc.steps + 1)]
    fig, (load, price) = plt.subplots(
        2, 1, sharex=True, figsize=(12, 6), gridspec_kw={"height_ratios": [3, 1]}
    )
    for r, color in zip(results, _colors(results), strict=True):
        load.stairs(r.site_kw, times, label=r.policy, color=color, baseline=None)
    limit = site_limit_kw(sc.site)
    if limit is not None:
        load.axhline(limit, color="black", linestyle="--", label=f"site limit {limit:g} kW")
    load.set_ylabel("site load, kW (step average)")
    load.legend(loc="upper right")
    load.grid(alpha=0.3)
    price.stairs(sc.step_prices, times, color="dimgray", baseline=None)
    price.set_ylabel("price per kWh")
    price.grid(alpha=0.3)
    price.xaxis.set_major_formatter(mdates.DateFormatter("%a %H:%M", tz=sc.tz))
    fig.suptitle(f"evhub plan: site {sc.site.id}, {'foresight' if sc.foresight else 'online'}")
    fig.autofmt_xdate()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _ticks(scenario: Scenario) -> list[tuple[datetime, str]]:
    """Local midnights over a long period, every three hours over a short one."""
    sc = scenario
    long = sc.end - sc.start > timedelta(days=2)
    hours, fmt = ((0,), "%a %d") if long else (range(0, 24, 3), "%a %H:%M")
    out, day = [], sc.start.astimezone(sc.tz).date()
    while day <= sc.end.astimezone(sc.tz).date():
        for hour in hours:
            t = datetime.combine(day, time(hour), tzinfo=sc.tz)
            if sc.start <= t <= sc.end:
                out.append((t, t.strftime(fmt)))
        day += timedelta(days=1)
    return out


def _svg(
    scenario: Scenario,
    series: Sequence[tuple[str, str, Sequence[float], bool]],
    unit: str,
    height: int,
) -> str:
    """One panel: (label, colour, values per step, dashed) lines over the period."""
    sc, width, left, right, top, bottom = scenario, 960, 70, 20, 12, 28
    values = [v for _, _, vs, _ in series for v in vs]
    low, high = min([0.0, *values]), max([1e-9, *values]) * 1.05
    seconds = (sc.end - sc.start).total_seconds()

    def x(t: datetime) -> float:
        return left + (width - left - right) * (t - sc.start).total_seconds() / seconds

    def y(v: float) -> float:
        return top + (height - top - bottom) * (1 - (v - low) / (high - low))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">']  # fmt: skip
    for i in range(5):
        v = low + (high - low) * i / 4
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   f'stroke="#ddd"/><text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">'
                   f"{v:.3g}</text>")  # fmt: skip
    for t, label in _ticks(sc):
        out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{height - bottom}" '
                   f'stroke="#eee"/><text x="{x(t):.1f}" y="{height - 10}" text-anchor="middle">'
                   f"{html.escape(label)}</text>")  # fmt: skip
    for label, color, vs, dashed in series:
        points = []
        for k, v in enumerate(vs):
            a, b = sc.start + k * sc.step, sc.start + (k + 1) * sc.step
            points.append(f"{x(a):.1f},{y(v):.1f} {x(b):.1f},{y(v):.1f}")
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        title = f"<title>{html.escape(label)}</title>"
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5"{dash} '
                   f'points="{" ".join(points)}">{title}</polyline>')  # fmt: skip
    out.append(f'<text x="{left}" y="{top + 10}" font-weight="bold">{html.escape(unit)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _html(scenario: Scenario, results: Sequence[PolicyResult]) -> str:
    sc = scenario
    series = [
        (r.policy, color, r.site_kw, False)
        for r, color in zip(results, _colors(results), strict=True)
    ]
    limit = site_limit_kw(sc.site)
    if limit is not None:
        series.append((f"site limit {limit:g} kW", "#000", [limit] * sc.steps, True))
    legend = " ".join(
        f'<span style="color:{color}">&#9644; {html.escape(label)}</span>'
        for label, color, _, _ in series
    )
    prices = [("price", "#666", sc.step_prices, False)]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>evhub plan: {html.escape(sc.site.id)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} span{{margin-right:1.5em}}
pre{{background:#f6f6f6;padding:1em}}</style></head><body>
<h1>evhub plan: site {html.escape(sc.site.id)}</h1>
<p>Site load (kW, average per step) against the site limit, and the price, per policy.</p>
<p>{legend}</p>
{_svg(sc, series, "site load, kW", 340)}
{_svg(sc, prices, "price per kWh", 160)}
<pre>{html.escape(table(sc, results))}</pre>
</body></html>
"""


def _kws(values: tuple[float, ...]) -> str:
    return ", ".join(f"{kw:g}" for kw in values)
