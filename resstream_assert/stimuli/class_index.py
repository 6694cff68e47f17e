"""Class folders named by WordNet ids (``n01440764/...``, the ImageNet layout) and the model's class indices.

An ImageFolder-like probe labels its images by the sorted order of its class folders. For an
ImageNet model that order is the model's own (torchvision's class indices are the sorted WordNet
ids) only when every one of its classes has a folder: a folder of 10 classes would label tench
0 and goldfish 1 whatever the model calls them. A class-index file maps each folder to the
model's index instead (``--resstream-class-index FILE``), in the form torchvision's
``imagenet_class_index.json`` has: ``{"0": ["n01440764", "tench"], "1": ["n01443537", "goldfish"], ...}``.

Stdlib only: the option's check reads the file before any model is loaded.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

from resstream_assert.errors import ProbeError

__all__ = ["WNID", "CLASS_INDEX_FORM", "is_wnid_folder", "read_class_index", "map_folders"]

#: A WordNet noun id as ImageNet names its class folders.
WNID = re.compile(r"n\d{8}")
#: The form of a class-index file, as messages show it.
CLASS_INDEX_FORM = '{"0": ["n01440764", "tench"], "1": ["n01443537", "goldfish"], ...}'


def is_wnid_folder(names: Sequence[str]) -> bool:
    """True when every class folder is named by a WordNet id (and there is at least one).

    Example:
        >>> is_wnid_folder(["n01440764", "n01443537"]), is_wnid_folder(["cat", "n01443537"])
        (True, False)
    """
    return bool(names) and all(WNID.fullmatch(str(n)) for n in names)


def read_class_index(path: str | Path) -> tuple[str, ...]:
    """The class ids of a class-index file, ordered by the model's class index (the id of class ``i`` at ``i``).

    The file maps ``"0"`` .. ``"K-1"`` (every index once) to ``[class id, name]``; the class ids are the
    folder names the probe uses (WordNet ids for ImageNet), each once.

    Example:
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "index.json")
        >>> _ = open(f, "w").write('{"1": ["n01443537", "goldfish"], "0": ["n01440764", "tench"]}')
        >>> read_class_index(f)
        ('n01440764', 'n01443537')
    """
    p = Path(str(path)).expanduser()
    where = f"class-index file {p}"
    if not p.is_file():
        raise ProbeError(f"{where} {'is a folder' if p.is_dir() else 'does not exist'}: give a JSON file like "
                         f"torchvision's imagenet_class_index.json, {CLASS_INDEX_FORM}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ProbeError(f"{where} cannot be read as JSON ({type(exc).__name__}: {exc}): give a JSON file of the "
                         f"form {CLASS_INDEX_FORM}") from None
    if not isinstance(data, dict) or not data:
        raise ProbeError(f"{where} is not a JSON object of class indices: give the form {CLASS_INDEX_FORM}")
    ids: dict[int, str] = {}
    for key, value in data.items():
        if not re.fullmatch(r"\d+", str(key)) or not isinstance(value, list) or not value \
                or not isinstance(value[0], str) or not value[0].strip():
            raise ProbeError(f"{where}: entry {key!r}: {json.dumps(value)[:80]} is not \"INDEX\": [\"CLASS_ID\", "
                             f"\"name\"]; give the form {CLASS_INDEX_FORM}")
        ids[int(key)] = value[0].strip()
    if sorted(ids) != list(range(len(ids))):
        missing = sorted(set(range(max(ids) + 1)) - set(ids))[:5]
        raise ProbeError(f"{where}: the indices must be 0 to {len(ids) - 1}, each once (missing: "
                         f"{', '.join(map(str, missing))}); give one entry per output of the model")
    ordered = tuple(ids[i] for i in range(len(ids)))
    twice = sorted({c for c in ordered if ordered.count(c) > 1})
    if twice:
        raise ProbeError(f"{where}: the class id {twice[0]!r} has two indices; each class id must name one output")
    return ordered


def map_folders(folders: Sequence[str], class_ids: Sequence[str], index_name: str) -> list[int]:
    """The model's class index of each class folder, from a class-index file's ids (:func:`read_class_index`).

    Example:
        >>> map_folders(["n01443537"], ("n01440764", "n01443537"), "index.json")
        [1]
    """
    where = {c: i for i, c in enumerate(class_ids)}
    unknown = [f for f in folders if f not in where]
    if unknown:
        raise ProbeError(f"class folder(s) {', '.join(unknown[:3])} of the probe are not in the class-index file "
                         f"{index_name} ({len(class_ids)} classes, e.g. {', '.join(class_ids[:2])}): rename the "
                         "folders to the file's class ids, remove them, or give the class-index file of this model")
    return [where[f] for f in folders]
