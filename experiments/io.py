"""Writing results atomically: a temp file in the same folder, then a rename."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _readable(tmp: str | Path) -> None:
    """mkstemp creates 0600 files; give results the usual permissions (0666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)


def fsync_file(path: str | Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stage(path: Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` into a temp file beside ``path`` (ending in path's suffix, so that savers that
    go by the suffix pick the right format), fsynced and readable; return the temp path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        fsync_file(tmp)
        _readable(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_file(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Write ``path`` through ``write(tmp)`` so that readers see the old file or the new one, never
    a truncated one (temp file, fsync, rename, fsync of the folder)."""
    path = Path(path)
    tmp = _stage(path, write)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def atomic_copy(src: str | Path, dst: str | Path) -> Path:
    return atomic_file(dst, lambda tmp: shutil.copyfile(src, tmp))


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` so that readers never see a half-written file."""
    return atomic_file(path, lambda tmp: tmp.write_text(text))


def json_text(path: str | Path, data: Any) -> str:
    """Strict JSON (RFC 8259): a NaN or infinity in ``data`` is a ValueError naming ``path``."""
    try:
        return json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
    except ValueError as err:
        raise ValueError(f"{path}: refusing to write a non-finite number into JSON ({err})") from None


def write_json(path: str | Path, data: Any) -> Path:
    """Strict JSON (RFC 8259): a NaN or infinity in ``data`` is a ValueError, never written."""
    return write_text(path, json_text(path, data))


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save a matplotlib figure atomically as PNG (150 dpi) and as a vector PDF beside it."""
    path = Path(path)
    for target in (path, path.with_suffix(".pdf")):
        atomic_file(target, lambda tmp: fig.savefig(tmp, dpi=150, bbox_inches="tight"))
    return path


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_results(folder: str | Path, files: dict[str, Any]) -> None:
    """Write several result files that belong together (a dict or list becomes JSON, a str text).

    All are first staged as temp files and only then renamed, in one pass, so a failure while
    computing or serialising any of them leaves every old file in place (never a JSON and a
    Markdown from different runs)."""
    folder = Path(folder)
    staged: list[tuple[Path, Path]] = []
    try:
        for name, data in files.items():
            text = data if isinstance(data, str) else json_text(folder / name, data)
            staged.append((_stage(folder / name, lambda tmp, text=text: tmp.write_text(text)), folder / name))
        for tmp, path in staged:
            os.replace(tmp, path)
        fsync_dir(folder)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def publish(folder: str | Path, stem: str, record: Any, markdown: str, plot: Callable[[Any, Path], Any]) -> None:
    """A study's outputs: ``<stem>.json`` (the record) and ``<stem>.md`` written atomically, the
    figure ``<stem>.png`` (and .pdf) drawn by ``plot(record, path)``, the markdown printed."""
    folder = Path(folder)
    write_results(folder, {f"{stem}.json": record, f"{stem}.md": markdown})
    plot(record, folder / f"{stem}.png")
    print(markdown)
