"""Writing results atomically: a temp file in the same folder, then a rename."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _readable(tmp: str) -> None:
    """mkstemp creates 0600 files; give results the usual permissions (0666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` so that readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        _readable(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """Strict JSON (RFC 8259): a NaN or infinity in ``data`` is a ValueError, never written."""
    try:
        text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False)
    except ValueError as err:
        raise ValueError(f"{path}: refusing to write a non-finite number into JSON ({err})") from None
    return write_text(path, text + "\n")


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save a matplotlib figure atomically as PNG (150 dpi) and as a vector PDF beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for target in (path, path.with_suffix(".pdf")):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{target.name}.", suffix=target.suffix)
        os.close(fd)
        try:
            fig.savefig(tmp, dpi=150, bbox_inches="tight")
            _readable(tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_results(folder: str | Path, files: dict[str, Any]) -> None:
    """Write several result files that belong together (a dict or list becomes JSON, a str text).

    Each file is atomic, and all are first written as temp files and only then renamed, in one
    pass, so a kill leaves either every old file or every new one in place except in the few
    microseconds of the renames (never a JSON and a Markdown from different runs after a failure
    while computing or serialising)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staged = []
    try:
        for name, data in files.items():
            if isinstance(data, str):
                text = data
            else:
                try:
                    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
                except ValueError as err:
                    raise ValueError(f"{folder / name}: refusing to write a non-finite number "
                                     f"into JSON ({err})") from None
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            _readable(tmp)
            staged.append((tmp, folder / name))
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
