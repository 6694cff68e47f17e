"""The verdict table of report JSON files: per claim the verdict, its effect and interval against
the claim's boundary, the blocks that hold / fail / stay undecided, what would decide the
undecided ones, and the verdict the older two-answer rule gives on the same rows.

The older rule (before the three-answer verdicts): a block "holds" when its Holm-adjusted p is
below alpha and its effect points the claim's way, otherwise it "fails"; the claim holds when
at least ``mostly`` of its blocks hold, otherwise it fails. It is recomputed from each row's
stored ``p_adjusted`` and ``effect``, so one run gives both columns.

    pytest --pyargs resstream_assert.suite --resstream-model zoo:resnet18-cifar64 \\
        --resstream-survey --resstream-report-json run.json
    PYTHONPATH=. python benchmarks/verdict_table.py run.json [more.json ...] [--md out.md]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from resstream_assert.report import read_report
from resstream_assert.results import ClaimResult, Verdict


def old_rule(result: ClaimResult) -> str:
    """The two-answer verdict of the older rule on this result's rows (module docstring)."""
    th = result.thresholds
    alpha, mostly = float(th.get("alpha", 0.05)), float(th.get("mostly", 0.5))
    direction = float(th.get("direction", 1.0))
    tested = [r for r in result.rows if math.isfinite(r.p_adjusted)]
    if not tested:
        return result.verdict.value
    holds = sum(r.p_adjusted < alpha and direction * r.effect > 0 for r in tested)
    return "holds" if holds >= math.ceil(mostly * len(tested)) else "fails"


def _num(x: float, fmt: str = "{:+.3f}") -> str:
    return fmt.format(x) if isinstance(x, (int, float)) and math.isfinite(x) else "-"


def claim_line(result: ClaimResult) -> str:
    """One Markdown row: claim, verdict, effect [CI], boundary, blocks, smallest detectable effect, old rule."""
    v, th = result.values, result.thresholds
    bound = ""
    if "delta" in th:
        bound = f"{'>' if th['direction'] > 0 else '<'} {th['delta']:g}"
    blocks = ("/".join(f"{int(v[k])}" for k in ("blocks_hold", "blocks_fail", "blocks_undecided"))
              + f" of {int(v['blocks_analysed'])}" if "blocks_analysed" in v else "-")
    decide = ""
    if result.verdict == Verdict.INCONCLUSIVE and "undecided: " in result.reason:
        decide = result.reason.split("undecided: ", 1)[1]  # the summary's own words: smallest effect, n that decides
    ci = f"[{_num(result.ci_low)}, {_num(result.ci_high)}]"
    return (f"| {result.claim} | **{result.verdict.value}** | {_num(result.effect)} {ci} | {bound} | {blocks} | "
            f"{decide} | {old_rule(result)} |")


def table(path: Path) -> str:
    """The Markdown verdict table of one report file, one section per model."""
    results = [ClaimResult.from_dict(d) for d in read_report(path)["results"]]
    out = []
    for model in dict.fromkeys(r.model for r in results):
        out += [f"### {model}", "", "| claim | verdict | effect [95% CI] | boundary | blocks hold/fail/undecided | "
                "what would decide | older rule |", "|---|---|---|---|---|---|---|"]
        out += [claim_line(r) for r in results if r.model == model]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+", type=Path, help="report JSON files (--resstream-report-json)")
    ap.add_argument("--md", type=Path, help="also write the tables here")
    args = ap.parse_args(argv)
    text = "\n".join(table(p) for p in args.reports)
    print(text)
    if args.md:
        args.md.write_text(text + "\n")


if __name__ == "__main__":
    main()
