"""The answer first: the terminal table keeps every reason whole, progress lines stay pytest's, the HTML report
opens with the tally and the matrix, and nothing in it is wider than the window (headless Chromium)."""

from __future__ import annotations

import re
from pathlib import Path

from resstream_assert.report.collect import ReportCollector
from resstream_assert.report.terminal import claims_table, plain
from tests.report_synth import make_result

ROOT = Path(__file__).resolve().parents[1]
SPEC = "tests.cifar_user_model:resnet20"


def _report(*results) -> dict:
    c = ReportCollector(config={"models": sorted({r.model for r in results}), "seed": 0})
    for i, r in enumerate(results):
        c.add(r, f"test_claims.py::test_{i}")
    return c.to_json()


def test_a_long_reason_is_wrapped_whole_at_80_columns():
    reason = ("only 3 of 8 analysed blocks decided: layer2.1 and layer3.0 have fewer than 10 defined channels "
              "after the P1 band, so their intervals cross the boundary; about 410 probe images (--resstream-images) "
              "would decide")
    assert len(reason) >= 200
    rep = _report(make_result("r18", "C1", verdict="inconclusive").with_(reason=reason))
    lines = [plain(line) for line in claims_table(rep, width=80)]
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    body = " ".join(line.strip() for line in lines[3:])
    assert reason in body and "…" not in body  # every word, in order, nothing cut
    # the claim's title and its effect's unit, from the registry
    assert "Skip-overwrite-mix spectrum exists within blocks" in body
    assert "effect: share of channels in the rarest of skip / mix / overwrite (holds > 0.05)" in body


PROGRESS_TEST = """
def test_first():
    pass

def test_captures(resstream_ref, resstream_pipeline):
    resstream_pipeline.claim_results(resstream_ref.spec, resstream_ref.backend)  # captures, logging it

def test_last():
    pass
"""


def test_progress_messages_leave_pytests_progress_lines_whole(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("COLUMNS", "100")
    pytester.makepyfile(test_progress=PROGRESS_TEST)
    result = pytester.runpytest_subprocess("--resstream-model", SPEC, "--resstream-images", "64",
                                           "--resstream-claims", "C1", "--resstream-input-size", "32",
                                           "--resstream-no-cache",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    lines = result.stdout.lines
    ours = [line for line in lines if "[resstream] captured" in line]
    assert ours and all(line.startswith("[resstream] captured") for line in ours), ours
    progress = [line for line in lines if line.startswith("test_progress.py")]
    assert progress and all(re.search(r"\[\s*\d+%\]$", line) for line in progress), progress
    assert "".join(re.sub(r"^test_progress\.py |\s*\[\s*\d+%\]$", "", line) for line in progress) == "..."


# --- HTML, as a user sees it -------------------------------------------------------------------

def _two_model_report() -> dict:
    """Two models, the wide tables the report must keep inside the window: a claim-level grid of 8 blocks x
    3 categories (C2's), per-block rows, long reasons and long figure titles."""
    from resstream_assert.results import BlockRow

    blocks = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    grid = {f"{b}:{k}": 10 + i for i, b in enumerate(blocks) for k in ("skip", "mix", "overwrite")}
    long = "a reason that goes on " * 12
    out = []
    for model in ("zoo:cifar-resnet20-synth32", "a/very/long/path/to/checkpoints/mynet.py:make_net@weights.pth"):
        out.append(make_result(model, "C1", verdict="inconclusive").with_(reason=long))
        out.append(make_result(model, "C2", gate=False).with_(
            values=grid, rows=(BlockRow("all blocks", "holds", 0.2, 0.01, 0.01, 0.2, 0.1, 0.3, 640,
                                        values=grid),)))
        c3 = make_result(model, "C3", with_figures=True)
        figs = {k: {**v, "title": "a figure title long enough to be cropped on both sides of the figure " * 2}
                for k, v in c3.figures.items()}
        out.append(c3.with_(figures=figs))
        out.append(make_result(model, "C9", verdict="fails").with_(effect=float("nan")))
    return _report(*out)


def test_the_report_opens_with_the_answer_and_has_no_raw_nan():
    from resstream_assert.report.html import render_html

    page = render_html(_two_model_report(), figures=False)
    text = re.sub(r"<style>.*?</style>|<[^>]+>", " ", page, flags=re.S)
    assert ">nan<" not in page and " nan " not in text
    assert "2 of 6 gated claims hold, 2 fail, 2 undecided" in page  # C2 is report-only
    assert page.index('class="answer"') < page.index("Cross-architecture matrix") < page.index("<h2>Summary</h2>")
    # C2's 24 counts as a table of 8 blocks x 3 categories, not 24 columns
    assert "<th>block</th><th>skip</th><th>mix</th><th>overwrite</th>" in page
    assert "universality" not in page.lower()


def test_long_figure_titles_are_wrapped_inside_the_png():
    import io

    import numpy as np
    from matplotlib import image as mpimg

    from resstream_assert.report.plots import render_figure

    title = "a figure title long enough to be cropped on both sides of the figure " * 2
    png = render_figure({"type": "hist", "title": title, "xlabel": "M", "ylabel": "channels",
                         "panels": [{"label": "layer1.0", "edges": [0, .5, 1], "counts": [3, 5]}]})
    img = mpimg.imread(io.BytesIO(png), format="png")[..., :3]
    band = img[: img.shape[0] // 5]  # the title's rows
    edges = np.concatenate([band[:, :4], band[:, -4:]], axis=1)
    assert float(edges.min()) > 0.9, "the title touches the figure's edge: it is cropped"


def _chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


_CHECK = """<script>
window.addEventListener("load", () => {
  const doc = document.documentElement, bad = [];
  for (const el of document.querySelectorAll("h1,h2,h3,p,figcaption,summary,.facts div"))
    if (el.scrollWidth > el.clientWidth + 1) bad.push("cropped " + el.tagName + ": " + el.textContent.slice(0, 60));
  for (const img of document.querySelectorAll("figure img")) {
    const r = img.getBoundingClientRect(), c = img.parentElement.getBoundingClientRect();
    if (!img.complete || img.naturalWidth === 0) bad.push("not drawn: " + img.alt.slice(0, 60));
    else if (r.left < c.left - 1 || r.right > c.right + 1) bad.push("cropped figure: " + img.alt.slice(0, 60));
  }
  const out = {scroll: doc.scrollWidth, inner: window.innerWidth, body: document.body.scrollWidth,
               figures: document.querySelectorAll("figure img").length, bad: bad};
  const pre = document.createElement("pre");
  pre.id = "resstream-check";
  pre.textContent = JSON.stringify(out);
  pre.style.display = "none";
  document.body.appendChild(pre);
});
</script>"""


def chromium_check(html_path: Path, width: int) -> dict:
    """Load ``html_path`` in headless Chromium at ``width`` px and return what the page's own check measured."""
    import json
    import subprocess

    page = html_path.read_text(encoding="utf-8").replace("</body>", _CHECK + "</body>")
    checked = html_path.with_name(html_path.stem + "-checked.html")
    checked.write_text(page, encoding="utf-8")
    out = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          f"--window-size={width},900", "--virtual-time-budget=10000", "--dump-dom",
                          checked.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="resstream-check"[^>]*>(.*?)</pre>', out.stdout, flags=re.S)
    assert found, f"Chromium gave no result (exit {out.returncode}): {out.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">"))


def test_a_two_model_report_fits_the_window_in_chromium(tmp_path):
    import os

    import pytest

    if _chromium() is None:
        if os.environ.get("RESSTREAM_REQUIRE_CHROMIUM"):
            pytest.fail("RESSTREAM_REQUIRE_CHROMIUM is set but no chromium is on PATH (apt-get install chromium)")
        pytest.skip("no chromium on PATH (apt-get install chromium); .ci/run installs it and requires this test")
    from resstream_assert.report.html import render_html

    path = tmp_path / "report.html"
    path.write_text(render_html(_two_model_report()), encoding="utf-8")
    for width in (1280, 800):
        got = chromium_check(path, width)
        assert got["scroll"] <= got["inner"] and got["body"] <= got["inner"], (width, got)  # no sideways scroll
        assert got["figures"] >= 2 and not got["bad"], (width, got["bad"])
