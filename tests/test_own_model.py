"""A newcomer's own model in one line: a factory in the current folder, or a ``.py`` file, named by the spec.

The ``resstream`` and ``pytest`` console scripts do not put the current folder on the import path
(``python -m ...`` does); ``python -P -m ...`` starts the same way the scripts do, so these runs
see what a user of the scripts sees. Every bad form of such a spec is in tests/test_bad_input.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NET = (ROOT / "tests" / "cifar_user_model.py").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory) -> Path:
    """What a user has: ``mynet.py`` (factory ``make_net``) and its weights, and the same net in ``nets/`` as a
    file that imports a sibling module (its folder must be on the import path while it is imported)."""
    import torch

    d = tmp_path_factory.mktemp("user")
    (d / "mynet.py").write_text(NET + "\n\ndef make_net(num_classes: int = 10):\n    return resnet20(num_classes)\n")
    (d / "nets").mkdir()
    (d / "nets" / "blocks.py").write_text(NET)
    (d / "nets" / "mynet.py").write_text("from blocks import resnet20\n\n\ndef make_net(num_classes: int = 10):\n"
                                         "    return resnet20(num_classes)\n")
    sys.path.insert(0, str(d))
    try:
        import mynet

        torch.manual_seed(0)
        torch.save(mynet.make_net().state_dict(), d / "weights.pth")
    finally:
        sys.path.remove(str(d))
        sys.modules.pop("mynet", None)
    return d


def _run(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -P -m ARGS`` in ``folder``: the current folder is not on the import path, as for the scripts."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), RESSTREAM_CACHE_DIR=str(folder / ".cache"))
    return subprocess.run([sys.executable, "-P", "-m", *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_cli_imports_a_factory_from_the_current_folder(user_folder):
    out = _run(user_folder, "resstream_assert.cli", "sites", "mynet:make_net@weights.pth", "--input-size", "32")
    assert out.returncode == 0, out.stderr
    assert "9 residual blocks" in out.stdout and "Traceback" not in out.stderr


def test_the_cli_takes_a_python_file(user_folder):
    out = _run(user_folder, "resstream_assert.cli", "sites", "./nets/mynet.py:make_net@weights.pth",
               "--input-size", "32")
    assert out.returncode == 0, out.stderr
    assert "9 residual blocks" in out.stdout


def test_pytest_takes_both_forms(user_folder):
    (user_folder / "test_mine.py").write_text("def test_blocks(resstream_map):\n    assert len(resstream_map) == 9\n")
    out = _run(user_folder, "pytest", "-p", "no:cacheprovider", "test_mine.py", "-v",
               "--resstream-model", "mynet:make_net@weights.pth", "--resstream-model", "nets/mynet.py:make_net",
               "--resstream-input-size", "32", "--resstream-no-cache")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "2 passed" in out.stdout
    # test ids carry file names, not the folders they were found in
    assert "test_blocks[mynet.py:make_net]" in out.stdout and "test_blocks[mynet:make_net@weights.pth]" in out.stdout


def test_the_python_api_loads_a_file_spec(user_folder):
    import resstream_assert as ra

    loaded = ra.load_model(f"{user_folder / 'nets' / 'mynet.py'}:make_net@{user_folder / 'weights.pth'}",
                           input_size=32)
    assert loaded.num_classes == 10 and len(ra.discover(loaded)) == 9
    assert loaded.name == "mynet.py:make_net@weights.pth"


@pytest.mark.parametrize("text, label, architecture", [
    ("nets/mynet.py:make_net@runs/w.pth", "mynet.py:make_net@w.pth", "mynet.py:make_net"),
    (r"C:\models\mynet.py:make_net@C:\runs\w.pth+nc-id", "mynet.py:make_net@w.pth+nc-id", "mynet.py:make_net+nc-id"),
    ("mynet:make_net", "mynet:make_net", "mynet:make_net"),
])
def test_a_file_spec_is_labelled_by_its_file_name(text, label, architecture):
    from resstream_assert.loading import ModelSpec

    spec = ModelSpec.parse(text)
    assert (spec.kind, spec.label, spec.architecture) == ("factory", label, architecture)
