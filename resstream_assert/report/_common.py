"""Helpers shared by the report renderers: ordering, labels, the matrix (numbers: ``formatting``).

Everything here works on the JSON form of a report (``ReportCollector.to_json()`` or a file
read back), never on live objects, so a report can be re-rendered from a stored file and
the renderers never recompute a statistic. Stdlib only: this module is imported in every
pytest run (through the plugin's hooks) and must stay cheap.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from resstream_assert.keys import claim_sort_key, model_label, model_pairs, result_key, source

VERDICTS = ("holds", "fails", "inconclusive", "not_applicable")

#: Short cell text for the terminal matrix, where 12 claims must fit on one line.
SHORT_VERDICT = {"holds": "holds", "fails": "FAILS", "inconclusive": "inconcl", "not_applicable": "n/a"}


AGREEMENT_CLAIM = "C1-agree"


def agreement(report: Mapping[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    """The stimulus-agreement tables of a run that used both sources (empty lists otherwise).

    ``verdicts``: per (model, backend, claim) run on both, ``[model[backend], claim, exemplars
    verdict, featviz verdict, "same"|"differs"]``; ``kappa``: per block of the ``C1-agree``
    results, ``[model[backend], block, kappa, ci_low, ci_high, n, p_adjusted, verdict, note]``
    (numbers as given, for the renderers to format).

    Example:
        >>> rs = [{"model": "m", "backend": "torch", "claim": "C1", "verdict": "holds"},
        ...       {"model": "m", "backend": "torch", "claim": "C1", "verdict": "fails", "stimuli": "featviz"}]
        >>> agreement({"results": rs})[0]
        [['m[torch]', 'C1', 'holds', 'fails', 'differs']]
    """
    results = report.get("results", [])
    by_source: dict[tuple[str, str, str], dict[str, str]] = {}
    for r in results:
        if str(r.get("claim")) == AGREEMENT_CLAIM:
            continue
        key = (str(r.get("model", "")), str(r.get("backend", "")), str(r.get("claim", "")))
        by_source.setdefault(key, {})[source(r)] = str(r.get("verdict", ""))
    verdicts = []
    for (m, b, c), vs in sorted(by_source.items(), key=lambda kv: (kv[0][0], kv[0][1], claim_sort_key(kv[0][2]))):
        if "exemplars" in vs and "featviz" in vs:
            same = "same" if vs["exemplars"] == vs["featviz"] else "differs"
            verdicts.append([model_label(m, b), c, vs["exemplars"], vs["featviz"], same])
    kappa = []
    for r in results:
        if str(r.get("claim")) != AGREEMENT_CLAIM:
            continue
        for row in r.get("rows", []):
            kappa.append([model_label(str(r.get("model", "")), str(r.get("backend", ""))), str(row.get("block", "")),
                          row.get("effect"), row.get("ci_low"), row.get("ci_high"), row.get("n"),
                          row.get("p_adjusted"), str(row.get("verdict", "")), str(row.get("note", ""))])
    return verdicts, kappa


def claim_ids(results: Iterable[Mapping[str, Any]]) -> list[str]:
    """The claim ids of a report's results in natural order."""
    return sorted({str(r.get("claim", "")) for r in results}, key=claim_sort_key)


def matrix(report: Mapping[str, Any]) -> tuple[list[tuple[str, str]], list[str], dict[tuple[str, str, str], str]]:
    """The cross-architecture matrix: rows (model, backend), columns claim ids, cells verdicts.

    Example:
        >>> rows, cols, cells = matrix({"results": [
        ...     {"model": "a", "backend": "torch", "claim": "C1", "verdict": "holds"}]})
        >>> rows, cols, cells[("a", "torch", "C1")]
        ([('a', 'torch')], ['C1'], 'holds')
    """
    results = report.get("results", [])
    cells = {result_key(r): str(r.get("verdict", "")) for r in results}
    return model_pairs(results), claim_ids(results), cells


def show_matrix(report: Mapping[str, Any]) -> bool:
    """The matrix is printed only when it compares several models or backends (claim C6)."""
    return len(model_pairs(report.get("results", []))) > 1


def gate_label(result: Mapping[str, Any]) -> str:
    """``""`` for a gating claim, ``"report-only"`` for one that never fails a run."""
    return "" if result.get("gate", True) else "report-only"


def titles(results: Sequence[Mapping[str, Any]], report: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Claim id -> title, for legends under the matrix: the registry's (the report's ``claims``), else the first
    result's.

    Example:
        >>> titles([{"claim": "C6", "title": "old"}], {"claims": {"C6": {"title": "scale equivariance"}}})
        {'C6': 'scale equivariance'}
    """
    out: dict[str, str] = {}
    for r in results:
        out.setdefault(str(r.get("claim", "")), claim_info(report or {}, r)["title"])
    return out


def claim_info(report: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, str]:
    """A result's claim as the report's ``claims`` (written from the registry) describes it: ``title``, ``unit``
    (what its effect measures) and ``boundary`` (where the effect must lie to hold); a report without them (or a
    claim not registered) falls back to the result's own title and no unit.

    Example:
        >>> rep = {"claims": {"C3": {"title": "Skip channels ...", "unit": "Spearman rho", "boundary": "< -0.1"}}}
        >>> claim_info(rep, {"claim": "C3"})["unit"], claim_info({}, {"claim": "C9", "title": "t"})
        ('Spearman rho', {'title': 't', 'unit': '', 'boundary': ''})
    """
    c = (report.get("claims") or {}).get(str(result.get("claim", ""))) or {}
    return {"title": str(c.get("title") or result.get("title") or ""), "unit": str(c.get("unit") or ""),
            "boundary": str(c.get("boundary") or "")}


def effect_unit(info: Mapping[str, str]) -> str:
    """``'effect: Spearman rho of M with the branch gain (holds < -0.1)'``, or ``""`` for a claim with no unit."""
    if not info.get("unit"):
        return ""
    return f"effect: {info['unit']}" + (f" (holds {info['boundary']})" if info.get("boundary") else "")


def gated_tally(results: Sequence[Mapping[str, Any]]) -> str:
    """The report's answer in one line: ``'2 of 9 gated claims hold, 1 fail, 6 undecided'`` (inconclusive gated
    claims are undecided; not-applicable ones are counted apart).

    Example:
        >>> gated_tally([{"verdict": "holds"}, {"verdict": "fails"}, {"verdict": "inconclusive"},
        ...              {"verdict": "fails", "gate": False}, {"verdict": "not_applicable"}])
        '1 of 4 gated claims hold, 1 fail, 1 undecided, 1 not applicable'
    """
    gated = [str(r.get("verdict", "")) for r in results if r.get("gate", True)]
    n_na = gated.count("not_applicable")
    text = (f"{gated.count('holds')} of {len(gated)} gated claims hold, {gated.count('fails')} fail, "
            f"{gated.count('inconclusive')} undecided")
    return text + (f", {n_na} not applicable" if n_na else "")


def stability_text(result: Mapping[str, Any], short: bool = False) -> str:
    """How a result's verdict held up over probe half-samples and seeds (``--resstream-stability``), or ``""``.

    Example:
        >>> r = {"stability": {"runs": 20, "flips": 7, "rate": 0.35, "ci_low": 0.154, "ci_high": 0.592,
        ...                    "n_images": 256, "of_images": 512, "unstable": 1.0}}
        >>> text = stability_text(r)
        >>> text[:68], text.endswith("more probe images (--resstream-images) may settle it")
        ('unstable at n=512: flips in 7/20 re-evaluations (35%, 95% CI 15-59%)', True)
        >>> stability_text(r, short=True)
        'unstable at n=512 (flips 35%)'
    """
    s = result.get("stability") or {}
    if not s:
        return ""
    if not s.get("runs") and s.get("reruns_model"):
        return ("not covered: this claim re-runs the model (lesions), which a re-evaluation on captured responses "
                "cannot" if not short else "not covered (re-runs the model)")
    if not s.get("runs"):
        return (f"not re-evaluated: half-samples of {int(s.get('n_images') or 0)} images are below min_images "
                f"{int(s.get('min_images') or 0)}" if not short else "not re-evaluated (too few images)")
    word = "unstable" if s.get("unstable") else ("stable" if s.get("stable", 1.0) else "undetermined")
    n, rate = int(s.get("of_images") or 0), float(s.get("rate") or 0.0)
    if short:
        return f"{word} at n={n} (flips {rate:.0%})"
    lo, hi = float(s.get("ci_low") or 0.0), float(s.get("ci_high") or 0.0)
    advice = "; more probe images (--resstream-images) may settle it" if s.get("unstable") else \
        ("; stable needs the flip rate's upper bound below 10% (36 runs without a flip)"
         if word == "undetermined" else "")
    return (f"{word} at n={n}: flips in {int(s['flips'])}/{int(s['runs'])} re-evaluations ({rate:.0%}, 95% CI "
            f"{lo * 100:.0f}-{hi * 100:.0f}%) on {int(s.get('n_images') or 0)}-image halves, other seeds{advice}")


def stability_requested(report: Mapping[str, Any]) -> bool:
    """True when the run asked for verdict stability (its config, or any result carrying it)."""
    if int((report.get("config") or {}).get("stability") or 0) > 0:
        return True
    return any(r.get("stability") for r in report.get("results", []))
