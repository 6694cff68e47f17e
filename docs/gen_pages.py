"""The generated parts of the documentation: the claims table from the claim registry and the options table
from the options table, so neither page can drift from the code.

``python docs/gen_pages.py`` rewrites the part of ``docs/claims.md`` and ``docs/options.md`` between
``<!-- generated:NAME -->`` and ``<!-- end generated -->``; ``tests/test_docs.py`` fails when a committed page
differs from what this script writes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def claims_table() -> str:
    """One row per registered claim: what it claims, its null hypothesis and test, the effect's unit, the boundary
    the effect must clear to hold, how many blocks must hold, whether it gates a run."""
    from resstream_assert.claims import REGISTRY, claim_order

    rows = ["| id | claim | source | test (null hypothesis and statistic) | effect unit | holds when the effect is "
            "| blocks that must hold | gate |", "|---|---|---|---|---|---|---|---|"]
    for cid in claim_order(REGISTRY):
        spec = REGISTRY[cid]
        b = spec.boundary
        boundary = f"{'>' if b.direction > 0 else '<'} {b.delta:g}" if b else "within a reference tolerance"
        gate = "yes" if spec.gate else "report only"
        if spec.opt_in:
            gate += " (opt-in)"
        rows.append("| " + " | ".join(_cell(x) for x in (
            cid, spec.title, spec.source, spec.test, b.unit if b else "-", boundary, f"{spec.mostly:.0%}",
            gate)) + " |")
    return "\n".join(rows) + "\n"


def options_table() -> str:
    """One row per option of the table: the flag with what it expects, its default, what it does."""
    from resstream_assert.config.options import METAVARS, OPTIONS

    rows = ["| option | default | meaning |", "|---|---|---|"]
    for opt in OPTIONS:
        flag = f"--resstream-{opt.name}" + (f" {METAVARS[opt.name]}" if opt.name in METAVARS else "")
        default = "off" if opt.kind == "bool" else ("-" if opt.default in (None, "") else opt.default)
        rows.append(f"| `{_cell(flag)}` | {_cell(default)} | {_cell(opt.help)} |")
    return "\n".join(rows) + "\n"


def power_table() -> str:
    """The power recorded by ``calibration/power.py`` (``calibration/results/power.json``): per claim, the share of
    simulated instances with a planted effect in which it held, by design (channels per block, probe images)."""
    import json

    path = DOCS.parent / "calibration" / "results" / "power.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    from resstream_assert.keys import claim_sort_key

    cells = sorted(data.get("cells", []), key=lambda c: claim_sort_key(str(c["claim"])))  # stable within a claim
    rows = ["| claim | planted effect | design | channels per block | probe images | power | instances |",
            "|---|---|---|---|---|---|---|"]
    for c in cells:
        rows.append(f"| {c['claim']} | {c['effect']:g} | {_cell(c.get('config', '-'))} | {c['channels']} | "
                    f"{c['images']} | {c['power']:.2f} | {c['instances']} |")
    return "\n".join(rows) + "\n"


def claims_page() -> str:
    """The claims table, then the power recorded for the claims that have it."""
    return (claims_table() + "\n## Power where recorded\n\nThe share of simulated instances with a planted effect "
            "in which the claim held (`python -m calibration.power`; planted effects in each claim's simulation "
            "units, the designs on the [calibration page](calibration.md#power)):\n\n" + power_table())


def claim_lines() -> str:
    """One line per registered claim for the README: its id, title and whether it gates a run."""
    from resstream_assert.claims import REGISTRY, claim_order

    out = []
    for cid in claim_order(REGISTRY):
        spec = REGISTRY[cid]
        kind = "gate" if spec.gate else "report only"
        out.append(f"- **{cid}** {spec.title} ({spec.source}; {kind}{', opt-in' if spec.opt_in else ''})")
    return "\n".join(out) + "\n"


GENERATED = {"claims.md": ("claims", claims_page), "options.md": ("options", options_table),
             "../README.md": ("readme-claims", claim_lines)}


def render(page: str, text: str) -> str:
    """``text`` of ``page`` with its generated part rewritten."""
    name, make = GENERATED[page]
    pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- end generated -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"docs/{page} has no <!-- generated:{name} --> ... <!-- end generated --> part")
    return pattern.sub(lambda m: m.group(1) + make() + m.group(2), text)


def main() -> int:
    """Rewrite the generated parts in place."""
    for page in GENERATED:
        path = DOCS / page
        path.write_text(render(page, path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(DOCS.parent))
    sys.exit(main())
