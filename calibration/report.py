"""Tables, figures and the Markdown summary of the calibration and power runs.

    PYTHONPATH=. python -m calibration.report      # reads calibration/results/*.json, writes CALIBRATION.md + PNGs

Every false-positive rate is shown with its Clopper-Pearson 95% interval; "calibrated" means the
upper bound is at most alpha (see :mod:`calibration.calibrate`). Power curves come from
:mod:`calibration.power` (one figure per claim: power against effect size, one line per number of
channels per block; and against probe images).
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
ALPHA = 0.05


def fpr_markdown(rows: list[dict]) -> str:
    """False-positive rows as a Markdown table (claim, null, instances, rate, CP interval, calibrated, blocks).

    Example:
        >>> from calibration.calibrate import rate_row
        >>> "| C1 | x | 0/200 |" in fpr_markdown([rate_row("C1", "x", 0, 200)])
        True
    """
    out = ["| claim | null | false positives | rate | 95% CI (Clopper-Pearson) | calibrated (upper <= 0.05) | "
           "blocks with raw p < 0.05 [95% CI] |", "|---|---|---:|---:|---|---|---|"]
    for r in sorted(rows, key=lambda r: (int(r["claim"][1:]) if r["claim"][1:].isdigit() else 99, r["null"])):
        blocks = (f"{r['block_rejections']}/{r['blocks_tested']} = {r['block_rate']:.3f} "
                  f"[{r['block_ci_low']:.3f}, {r['block_ci_high']:.3f}]" if r.get("blocks_tested") else "")
        if r.get("void"):
            verdict = f"**void**: {r['void']}"
        elif r.get("is_null") is False:
            verdict = "not a null for this claim"
        elif r["calibrated"]:
            verdict = "yes"
        else:
            need = r.get("nulls_needed")
            verdict = f"**no** (rate >= alpha)" if need is None else f"not shown: needs ~{need} nulls"
        out.append(f"| {r['claim']} | {r['null']} | {r['false_positives']}/{r['instances']} | {r['rate']:.3f} | "
                   f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}] | {verdict} | {blocks} |")
    return "\n".join(out)


def fpr_figure(rows: list[dict], path: Path) -> None:
    """Each row's rate with its Clopper-Pearson interval against alpha, claim-level and block-level."""
    from matplotlib.figure import Figure

    rows = [r for r in rows if r.get("is_null") is not False and not r.get("void")]
    fig = Figure(figsize=(12, 0.3 * len(rows) + 1.6))
    ax = fig.add_subplot(1, 1, 1)
    for i, r in enumerate(rows):
        color = "tab:green" if r["calibrated"] else "tab:red"
        ax.errorbar(r["rate"], i, xerr=[[r["rate"] - r["ci_low"]], [r["ci_high"] - r["rate"]]], fmt="o",
                    color=color, capsize=3, markersize=4)
        if r.get("blocks_tested"):
            ax.errorbar(r["block_rate"], i + 0.25, xerr=[[r["block_rate"] - r["block_ci_low"]],
                                                         [r["block_ci_high"] - r["block_rate"]]],
                        fmt="s", color="0.55", capsize=2, markersize=3)
    ax.axvline(ALPHA, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(rows)), [f"{r['claim']}: {r['null'][:95]}" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("false-positive rate with its 95% Clopper-Pearson interval (circle: the claim holds; grey square: "
                  "a block's p < 0.05)")
    ax.set_title("False positives on nulls; dashed: alpha = 0.05; green: upper bound <= alpha", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def power_figure(claim: str, cells: list[dict], path: Path, effect_name: str) -> None:
    """Power against effect size, one line per channels per block (at the default probe size), and
    against probe images (right panel) when the cells vary it."""
    from matplotlib.figure import Figure

    images = sorted({c["images"] for c in cells})
    default = 512 if 512 in images else images[-1]
    fig = Figure(figsize=(9 if len(images) > 1 else 5, 3.6))
    ax = fig.add_subplot(1, 2 if len(images) > 1 else 1, 1)
    for ch in sorted({c["channels"] for c in cells}):
        pts = sorted((c["effect"], c["power"]) for c in cells if c["channels"] == ch and c["images"] == default)
        if pts:
            ax.plot(*zip(*pts), marker="o", label=f"N = {ch} random sets" if claim == "C10" else f"{ch} ch")
    ax.axhline(0.8, color="0.6", linestyle=":", linewidth=1)
    ax.set(xlabel=effect_name, ylabel="power (claim holds)", ylim=(-0.03, 1.03), title=f"{claim} at {default} images")
    ax.legend(fontsize=7)
    if len(images) > 1:
        ax2 = fig.add_subplot(1, 2, 2)
        for (eff, ch) in sorted({(c["effect"], c["channels"]) for c in cells if c["images"] != default}):
            pts = sorted((c["images"], c["power"]) for c in cells if c["effect"] == eff and c["channels"] == ch)
            ax2.plot(*zip(*pts), marker="o", label=f"{effect_name} {eff:g}, {ch} ch")
        ax2.set(xscale="log", xlabel="probe images", ylim=(-0.03, 1.03), title=f"{claim} against probe images")
        ax2.set_xticks(images, [str(n) for n in images])
        ax2.minorticks_off()
        ax2.axhline(0.8, color="0.6", linestyle=":", linewidth=1)
        ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _load(pattern: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob(pattern))]


def _extra_sections() -> list[str]:
    """C4's earlier block test on real nulls and C10 on the recorded zoo outcomes, when their files exist."""
    parts = []
    welch = _load("c4_welch_real_nulls.json")
    if welch:
        parts += ["## C4 with Welch's own p (before the image permutations)", "", welch[0]["note"] + ".", "",
                  fpr_markdown(welch[0]["rows"]), ""]
    for rec in _load("c10_recorded*_power.json"):
        parts += [f"## C10 on recorded lesion outcomes of {rec.get('model', 'zoo:resnet18-synth96')}", "",
                  "S* picked on one half of the probe images, every random set at four zooms scored on the other "
                  "half; power = share of 200 paired image-bootstrap resamples with p < 0.05 "
                  f"(`{rec['command']}`).", "",
                  "| block | configuration | p (all images) | sets run | excess [95% CI] | power | mean sets run | "
                  "corr(4-zoom slope, ΔD(2)) |", "|---|---|---:|---:|---|---:|---:|---:|"]
        parts += [f"| {r['block']} | {r['config']} | {r['p']:.3g} | {r['sets_run']} | {r['excess']:+.3f} "
                  f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] | {r['power']:.2f} | {r['mean_sets_run']:.1f} | "
                  f"{r['corr_four_zoom_slope_vs_dD2']:.3f} |" for r in rec["rows"]]
        parts.append("")
    return parts


def summary() -> str:
    """Write the figures and ``CALIBRATION.md`` from every result file; return the Markdown."""

    parts = ["# Calibration and power", "",
             "Written by `PYTHONPATH=. python -m calibration.report` from the JSON files in this folder; the "
             "command behind each file is in its `command` field. Alpha = 0.05. A claim is **calibrated** on a "
             "null when the Clopper-Pearson 95% upper bound of its false-positive rate is <= alpha.", ""]
    rows = []
    for name, title in (("real-*.json", "Nulls built from trained zoo models"),
                        ("fpr-*.json", "Synthetic nulls"), ("controls.json", "Model-level negative controls")):
        # rows of this release's runs only (they carry nulls_needed); earlier files stay for the record
        got = [r for d in _load(name) for r in d["rows"] if "nulls_needed" in r]
        if got:
            rows += got
            parts += [f"## {title}", "", fpr_markdown(got), ""]
    if rows:
        fpr_figure(rows, RESULTS / "fpr.png")
        parts += ["![false-positive rates](fpr.png)", ""]
    parts += _extra_sections()
    power = _load("power.json")
    if power:
        parts += ["## Power", "", power_markdown(power[0], RESULTS), ""]
    text = "\n".join(parts)
    (RESULTS / "CALIBRATION.md").write_text(text + "\n")
    return text




# --- power tables (rendered here; calibration/power.py computes the cells) ---

EFFECT_NAMES = {"C1": "rarest category share", "C3": "planted rho(M, gain)", "C5": "scale_size (30% of channels)",
                "C6": "scale_size (30% of channels)", "C8": "scale_size (30% of channels)",
                "C9": "scale_size (30% of channels)", "X1/X2": "net share of channels",
                "C10": "excess damage per unit zoom"}


def _grid(cells: list[dict], images: int = 512) -> str:
    at = [c for c in cells if c["images"] == images]
    effects, chans = sorted({c["effect"] for c in at}), sorted({c["channels"] for c in at})
    value = {(c["effect"], c["channels"]): c["power"] for c in at}
    out = ["| effect \\ channels | " + " | ".join(str(c) for c in chans) + " |", "|---|" + "---:|" * len(chans)]
    for e in effects:
        out.append(f"| {e:g} | " + " | ".join(f"{value[(e, c)]:.2f}" if (e, c) in value else "" for c in chans)
                   + " |")
    return "\n".join(out)


def power_markdown(result: dict, figures: Path | None = None) -> str:
    """Per claim: the power table at 512 probe images (rows: effect; columns: channels per block, or for C10
    random sets), the images table where measured, and the figure (written when ``figures`` is given)."""
    parts = []
    cells = result["cells"]
    for claim in ("C1", "C3", "C5", "C6", "C8", "C9", "X1/X2", "C10"):
        mine = [c for c in cells if c["claim"] == claim]
        if not mine:
            continue
        n = max(c["instances"] for c in mine)
        parts += [f"### {claim}: power against {EFFECT_NAMES[claim]} ({n} instances per cell)", ""]
        if claim == "C1":
            parts += ["At the current rule (`python -m calibration.power --claims c1`); synthetic measures: probe "
                      "images do not enter.", ""]
        if claim == "C3":
            parts += ["At the current rule with bootstrap intervals (`python -m calibration.power --claims c3`): every "
                      "identity block's interval must clear rho = -0.1.", ""]
        groups = {c.get("config", "") for c in mine}
        for g in sorted(groups):
            sub = [c for c in mine if c.get("config", "") == g]
            if g and claim == "C10":
                parts += [f"{g} (columns: images scored; mean random sets run in brackets):", "",
                          _c10_table(sub), ""]
                continue
            if g:
                parts += [f"{g}:", "", _grid(sub), ""]
                continue
            parts += [_grid(sub), ""]
            other = sorted({c["images"] for c in sub} - {512})
            if other:
                parts += ["Against probe images:", "", _grid_images(sub), ""]
        if figures is not None:
            slug = claim.replace("/", "-")
            main = [c for c in mine if c.get("config", "") in ("", "defaults: N=40, h=2, zooms 1,2")]
            first = min(groups)  # a claim whose cells all carry a configuration: its first one
            power_figure(claim, main or [c for c in mine if c.get("config", "") == first],
                         figures / f"power-{slug}.png", EFFECT_NAMES[claim])
            parts += [f"![{claim} power](power-{slug}.png)", ""]
    return "\n".join(parts)


def _grid_images(cells: list[dict]) -> str:
    keys = sorted({(c["effect"], c["channels"]) for c in cells if c["images"] != 512})
    imgs = sorted({c["images"] for c in cells})
    value = {(c["effect"], c["channels"], c["images"]): c["power"] for c in cells}
    out = ["| effect, channels \\ images | " + " | ".join(map(str, imgs)) + " |", "|---|" + "---:|" * len(imgs)]
    for e, ch in keys:
        out.append(f"| {e:g}, {ch} | " + " | ".join(f"{value[(e, ch, n)]:.2f}" if (e, ch, n) in value else ""
                                                   for n in imgs) + " |")
    return "\n".join(out)


def _c10_table(cells: list[dict]) -> str:
    imgs = sorted({c["images"] for c in cells})
    effects = sorted({c["effect"] for c in cells})
    value = {(c["effect"], c["images"]): c for c in cells}
    out = ["| excess \\ images | " + " | ".join(map(str, imgs)) + " |", "|---|" + "---:|" * len(imgs)]
    for e in effects:
        out.append(f"| {e:g} | " + " | ".join(f"{value[(e, n)]['power']:.2f} ({value[(e, n)]['mean_sets_run']:.0f})"
                                              for n in imgs) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    print(summary())
