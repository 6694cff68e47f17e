"""The documentation: generated parts equal to what the registry and the options table give, a strict site build
(a broken link fails), no link out of the repository, no internal codes, a README example that names real API."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]


def _gen():
    spec = importlib.util.spec_from_file_location("gen_pages", DOCS / "gen_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page", sorted(_gen().GENERATED))
def test_generated_parts_are_up_to_date(page):
    text = (DOCS / page).read_text(encoding="utf-8")
    assert _gen().render(page, text) == text, f"docs/{page} is stale: run python docs/gen_pages.py"


def test_the_claims_page_lists_every_claim_with_its_unit_and_boundary():
    from resstream_assert.claims import REGISTRY

    text = (DOCS / "claims.md").read_text(encoding="utf-8")
    for cid, spec in REGISTRY.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {cid} |"))
        if spec.boundary is not None:
            assert spec.boundary.unit in row and f"{spec.boundary.delta:g}" in row, row


def test_no_link_leaves_the_repository_and_no_internal_codes():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            assert not re.match(r"[a-z]+:", target), f"{page.name}: link out of the repository: {target}"
            path = target.split("#")[0]
            if path:
                assert (page.parent / path).exists(), f"{page.name}: broken link {target}"
        assert not re.search(r"\bW\d+\b|the issue\b|spec §|shared/spec", text), page.name


def test_the_readme_is_one_screen_and_its_example_names_real_api():
    import resstream_assert as ra
    from resstream_assert import assertions

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 80
    (example,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    compile(example, "README example", "exec")
    assert len(example.strip().splitlines()) <= 12
    for name in re.findall(r"from resstream_assert\.assertions import (\w+)", example):
        assert hasattr(assertions, name)
    assert {"claims", "images"} <= set(__import__("inspect").signature(ra.analyze).parameters)
    assert "--index-url https://download.pytorch.org/whl/cpu" in text  # a CPU-only install line


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("material", reason="the docs extra: pip install -e '.[docs]'")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
                         timeout=300)
    assert out.returncode == 0 and "WARNING" not in out.stderr, out.stderr[-3000:]
    assert (tmp_path / "site" / "claims" / "index.html").exists()
