"""Paths a run writes to: resolved through symlinks, never a system folder, never the file a run reads.

A report path or cache folder given as a symlink is written where the link points; a baseline
overwritten by the report of the run that was compared with it would let a retry pass. These
helpers let every writer (the report options, ``resstream report merge``, the response cache,
``resstream featviz``) check the real place first. Stdlib only.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["real_path", "same_file", "system_location", "SYSTEM_TREES"]

#: Folders whose whole tree belongs to the operating system (POSIX): nothing of a run is written there.
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin", "/sys",
                "/usr", "/System", "/Library", "/private/etc")


def real_path(path: str | os.PathLike[str]) -> Path:
    """``path`` made absolute with every symlink followed (also for a file that does not exist yet).

    Example:
        >>> real_path("/tmp/../tmp/x.json").name
        'x.json'
    """
    return Path(os.path.realpath(Path(path).expanduser()))


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when ``a`` and ``b`` name one file: the same real path, or (both existing) the same inode.

    Example:
        >>> same_file("/tmp/a.json", "/tmp/./a.json"), same_file("/tmp/a.json", "/tmp/b.json")
        (True, False)
    """
    if real_path(a) == real_path(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def system_location(path: str | os.PathLike[str]) -> str:
    """``""``, or why a run must not write at ``path``: where it really is (symlinks followed) is the file
    system's root, a top-level folder, or inside an operating-system tree (:data:`SYSTEM_TREES`).

    Example:
        >>> system_location("/etc/cron.d/x")
        'its real location /etc/cron.d/x is inside the system folder /etc'
        >>> system_location("/"), system_location("/tmp/run/r.json")
        ('its real location / is the root folder', '')
    """
    if os.name != "posix":
        return ""
    real = real_path(path)
    if real == Path("/"):
        return "its real location / is the root folder"
    if real.parent == Path("/"):
        return f"its real location {real} is a top-level system folder"
    for tree in SYSTEM_TREES:
        if real == Path(tree) or Path(tree) in real.parents:
            return f"its real location {real} is inside the system folder {tree}"
    return ""
