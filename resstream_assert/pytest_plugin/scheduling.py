"""pytest-xdist scheduling by model: all tests of one model (spec x backend) go to one worker.

A model's tests share its session fixtures (loaded model, captures, lesions); spread over
workers, each worker would load and capture the model again. xdist's own ``loadgroup`` mode
cannot be used with pytest 9 (it renames test ids through an attribute pytest 9 no longer
reads), so this is ``loadscope`` with the model as the scope. Tests of no model are each their
own scope (plain load balancing). Imported only under xdist.
"""

from __future__ import annotations

from typing import Sequence

from xdist.scheduler.loadscope import LoadScopeScheduling


class ModelScheduling(LoadScopeScheduling):
    """``LoadScopeScheduling`` whose scope is the model a test's id names.

    ``labels`` are the parametrization ids of the run's models (``str(ModelRef)``).

    Example:
        >>> ModelScheduling(config, log, ["zoo:a"])._split_scope("s.py::test_claim[zoo:a-C3]")  # doctest: +SKIP
        'resstream:zoo:a'
    """

    def __init__(self, config, log=None, labels: Sequence[str] = ()) -> None:
        super().__init__(config, log)
        self.labels = sorted(set(labels), key=len, reverse=True)  # longest first: "zoo:ab" before "zoo:a"

    def _split_scope(self, nodeid: str) -> str:
        params = nodeid[nodeid.find("[") + 1:-1] if nodeid.endswith("]") and "[" in nodeid else ""
        for label in self.labels:
            if label and (params == label or params.startswith(label + "-") or f"-{label}-" in f"-{params}-"):
                return f"resstream:{label}"
        return nodeid
