"""Find a user's model factory: ``package.module:make_net`` or ``path/to/mynet.py:make_net``.

A module is looked up as Python looks it up, and also in the current folder, as ``python -m
pytest`` does (the ``pytest`` and ``resstream`` scripts do not put it on the import path, and a
user who runs from the folder that holds ``mynet.py`` means that file). A file is imported from
its path, with its folder on the import path so that its own sibling imports work. Whatever
goes wrong (no such module or file, a relative or path-like module name, an import that raises,
a missing name) is a :class:`~resstream_assert.errors.ModelSpecError` that names the fix.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from resstream_assert.errors import ModelSpecError
from resstream_assert.loading.spec import ModelSpec

__all__ = ["find_factory"]


def find_factory(spec: ModelSpec) -> Callable[..., Any]:
    """The callable a factory spec names (not yet called).

    Example:
        >>> find_factory(ModelSpec.parse("collections:OrderedDict")).__name__
        'OrderedDict'
        >>> find_factory(ModelSpec.parse("./mynet:make_net"))
        Traceback (most recent call last):
        ...
        resstream_assert.errors.ModelSpecError: Model spec './mynet:make_net': './mynet' is a path, not a module name Python can import. Name the file with its .py suffix ('./mynet.py:make_net'), or the module as Python imports it ('mynet:make_net', from the folder that holds mynet.py).
    """
    where, _, attr = spec.target.rpartition(":")
    module = _from_file(spec, where) if spec.factory_file else _from_module(spec, where)
    try:
        factory = getattr(module, attr)
    except AttributeError:
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
        raise ModelSpecError(f"Model spec {spec.text!r}: {where} has no {attr!r}. It defines "
                             f"{', '.join(names[:12]) or 'no public callable'}; name the one that returns the model "
                             f"('{where}:NAME').") from None
    if not callable(factory):
        raise ModelSpecError(f"Factory {spec.target!r} in spec {spec.text!r} is a {type(factory).__name__}, not a "
                             "callable. Name a function or class that returns an nn.Module.")
    return factory


def _from_module(spec: ModelSpec, name: str) -> ModuleType:
    """``package.module`` imported from the import path, else from the current folder."""
    if "/" in name or "\\" in name or name.startswith("."):
        path = name if "/" in name or "\\" in name else "./" + name.lstrip(".")
        attr = spec.target.rpartition(":")[2]
        stem = Path(path).name
        raise ModelSpecError(
            f"Model spec {spec.text!r}: {name!r} is {'a path' if path == name else 'relative'}, not a module name "
            f"Python can import. Name the file with its .py suffix ('{path}.py:{attr}'), or the module as Python imports "
            f"it ('{stem}:{attr}', from the folder that holds {stem}.py).")
    top = name.split(".")[0]
    try:
        return _import(spec, name)
    except ModuleNotFoundError as exc:
        if exc.name != top or not _in_folder(Path.cwd(), top):
            raise _not_found(spec, name, exc) from None
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)  # as `python -m pytest` does: the user runs from the folder that holds the module
    try:
        return _import(spec, name)
    except ModuleNotFoundError as exc:
        raise _not_found(spec, name, exc) from None


def _in_folder(folder: Path, top: str) -> bool:
    return (folder / f"{top}.py").is_file() or (folder / top / "__init__.py").is_file()


def _import(spec: ModelSpec, name: str) -> ModuleType:
    """``importlib.import_module``; anything but a missing top-level module becomes a ModelSpecError."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.split(".")[0] == exc.name.split(".")[0] and name.startswith(exc.name):
            raise  # the module itself (or one of its packages) is missing: the caller says where it looked
        raise _failed(spec, name, exc) from exc
    except BaseException as exc:  # noqa: BLE001 - a user's module may raise anything, even SystemExit
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise _failed(spec, name, exc) from exc


def _from_file(spec: ModelSpec, file: str) -> ModuleType:
    """A module imported from a ``.py`` file, its folder on the import path (its own imports work)."""
    path = Path(file).expanduser()
    if not path.is_file():
        why = "is a folder" if path.is_dir() else "does not exist"
        raise ModelSpecError(f"Model spec {spec.text!r}: the file {file!r} {why} (relative to the current folder "
                             f"{os.getcwd()}). Give the path of the Python file that defines the factory.")
    path = path.resolve()
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = path.stem
    known = sys.modules.get(name)
    if known is not None and Path(getattr(known, "__file__", "") or "").resolve() == path:
        return known
    if known is not None or not name.isidentifier():  # another module has that name: load this one beside it
        name = "resstream_user_" + "".join(c if c.isalnum() else "_" for c in name)
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ModelSpecError(f"Model spec {spec.text!r}: {file!r} cannot be imported as Python. Give a .py file.")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # classes in it pickle and unpickle by this name
    try:
        module_spec.loader.exec_module(module)
    except BaseException as exc:  # noqa: BLE001 - a user's file may raise anything, even SystemExit
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise _failed(spec, file, exc) from exc
    return module


def _not_found(spec: ModelSpec, name: str, exc: ModuleNotFoundError) -> ModelSpecError:
    attr = spec.target.rpartition(":")[2]
    file = name.replace(".", "/") + ".py"
    return ModelSpecError(
        f"Cannot import factory {spec.target!r} from spec {spec.text!r} ({exc}; looked in the current folder "
        f"{os.getcwd()} and on the import path). It must be an importable 'package.module:callable' returning an "
        f"nn.Module: run from the folder that holds {file}, name the file ('path/to/{file}:{attr}'), or add its "
        "folder to PYTHONPATH.")


def _failed(spec: ModelSpec, where: str, exc: BaseException) -> ModelSpecError:
    """Importing the user's module raised: say which module, what it raised, and where."""
    detail = (str(exc).strip().splitlines() or [""])[0][:300]
    if isinstance(exc, SyntaxError) and exc.lineno:
        detail = f"{exc.msg} (line {exc.lineno})"
    hint = (f" The module needs {exc.name!r}, which is not installed: install it in this environment."
            if isinstance(exc, ModuleNotFoundError) and exc.name else " Fix the module so that it imports.")
    return ModelSpecError(f"Model spec {spec.text!r}: importing {where} raised {type(exc).__name__}: {detail}.{hint}")
