"""Screenshots of a report as a user sees it (headless Chromium, 1280 px wide), for the documentation.

Usage: ``python docs/screenshots.py REPORT.json docs/img`` writes ``report-top.png`` (the answer, the matrix and
the summary) and ``report-claim.png`` (a claim's section: its per-block table and figures) from the JSON report of
a run (``--resstream-report-json``). Needs Debian's ``chromium`` on PATH.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 1400) -> None:
    """One screenshot of the top of ``page`` at ``width`` x ``height`` px."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("no chromium on PATH: apt-get install -y chromium")
    url = page.as_uri()
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={width},{height}", "--virtual-time-budget=10000", f"--screenshot={out}", url],
                   check=True, capture_output=True, timeout=120)


def main(argv: list[str]) -> None:
    """Render the report's HTML and take the two screenshots."""
    from resstream_assert.report.collect import read_report
    from resstream_assert.report.html import render_html

    report, folder = read_report(argv[0]), Path(argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(render_html(report), encoding="utf-8")
        screenshot(page, folder / "report-top.png")
        # A claim's section: the page of that one result, tall enough to show its tables and figures (Chromium's
        # --screenshot does not scroll to a #fragment).
        first = next(r for r in report["results"] if r.get("rows") and r.get("figures") and r["claim"] == "C2") \
            if any(r["claim"] == "C2" and r.get("figures") for r in report["results"]) \
            else next(r for r in report["results"] if r.get("rows") and r.get("figures"))
        page.write_text(render_html({**report, "results": [first]}), encoding="utf-8")
        screenshot(page, folder / "report-claim.png", height=2000)

if __name__ == "__main__":
    main(sys.argv[1:])
