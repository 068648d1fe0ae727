"""What a file given as a checkpoint is, read from its first bytes before any loader touches it.

A failed download saves an HTML page under the weights' name, a clone without ``git lfs pull`` a text
pointer, an interrupted copy a truncated file. Handed to a loader, these fail with the loader's words
(``KeyError: 101`` from the unpickler, ``SafetensorError``); :func:`sniff` names them instead, reading
only the header (a safetensors header, a zip directory, a few KiB of text) and never unpickling.
:func:`require_checkpoint_file` turns a file no loader can take into one line: what it is, what was
expected.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from exda.errors import UserError

EXPECTED = ("expected a .safetensors checkpoint (exda's, or a plain state dict), a run folder, or a "
            "PyTorch .pth / .ckpt")
_HEAD = 4096
_MAX_HEADER = 100 << 20  # safetensors caps its JSON header at 100 MB
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
                "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
_MAGIC = {  # binary formats people mistake for weights
    b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
    b"II*\x00": "a TIFF image", b"MM\x00*": "a TIFF image", b"\x93NUMPY": "a NumPy .npy array",
    b"\x1f\x8b": "a gzip archive (unpack it first)", b"BZh": "a bzip2 archive (unpack it first)",
    b"\xfd7zXZ": "an xz archive (unpack it first)", b"7z\xbc\xaf": "a 7-Zip archive (unpack it first)",
    b"\x89HDF": "an HDF5 file (Keras / TensorFlow weights?)", b"\x7fELF": "an executable",
    b"%PDF": "a PDF document",
}

Kind = Literal["safetensors", "pytorch", "other"]


@dataclass(frozen=True)
class FileKind:
    """``kind``: which loader may read the file ("other": none); ``what``: the file, in words, for a
    message ("an HTML page"); ``loadable``: False when the header already shows it is damaged or truncated;
    ``metadata``: a safetensors file's ``__metadata__``."""

    kind: Kind
    what: str
    loadable: bool = True
    metadata: dict[str, str] = field(default_factory=dict)


def sniff(path: str | Path) -> FileKind:
    """What ``path`` holds, from its header. A folder or missing path is ``other``."""
    path = Path(path)
    if path.is_dir():
        return FileKind("other", "a folder", False)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(_HEAD)
            header_length = int.from_bytes(head[:8], "little")
            if head[8:9] == b"{" and header_length <= _MAX_HEADER:
                return _safetensors(fh, header_length, size)
    except OSError as err:
        return FileKind("other", f"unreadable ({err.strerror or err})", False)
    if size == 0:
        return FileKind("other", "an empty file (0 bytes)", False)
    if head.startswith(b"PK\x03\x04"):
        return _zip(path)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return FileKind("pytorch", "a pickle (a PyTorch checkpoint in the legacy format)")
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            return FileKind("other", what, False)
    text = _as_text(head)
    if text is not None:
        return FileKind("other", _describe_text(text, path), False)
    if head[8:9] == b"{":
        return FileKind("safetensors", f"a damaged safetensors file (its header length reads {header_length:,} bytes)",
                        False)
    shown = " ".join(f"{b:02x}" for b in head[:8])
    return FileKind("other", f"binary data of no known checkpoint format (first bytes {shown}; {size:,} bytes)", False)


def require_checkpoint_file(path: str | Path) -> FileKind:
    """:func:`sniff`, and one line (a UserError) when no loader can read the file."""
    found = sniff(path)
    if found.kind == "other" or not found.loadable:
        raise UserError(f"{path} is {found.what}; {EXPECTED}")
    return found


def _safetensors(fh, n: int, size: int) -> FileKind:
    """A file whose 9th byte opens a JSON object of ``n`` bytes: check it and the data length it promises."""
    if 8 + n > size:
        return FileKind("safetensors", f"a truncated safetensors file (its header alone needs {8 + n:,} bytes; "
                        f"the file has {size:,})", False)
    fh.seek(8)
    try:
        header = json.loads(fh.read(n))
    except (ValueError, UnicodeDecodeError):
        return FileKind("safetensors", "a damaged safetensors file (its header is not valid JSON)", False)
    if not isinstance(header, dict):
        return FileKind("safetensors", "a damaged safetensors file (its header is not a JSON object)", False)
    metadata = header.pop("__metadata__", None) or {}
    end = 0
    for name, entry in header.items():
        try:
            begin, stop = entry["data_offsets"]
            count = math.prod(entry["shape"])
            nbytes = count * _DTYPE_BYTES[entry["dtype"]] if entry["dtype"] in _DTYPE_BYTES else stop - begin
        except (TypeError, KeyError, ValueError):
            return FileKind("safetensors", f"a damaged safetensors file (tensor {name!r} is described wrongly)", False)
        if not (isinstance(begin, int) and isinstance(stop, int) and 0 <= begin <= stop and stop - begin == nbytes):
            return FileKind("safetensors", f"a damaged safetensors file (tensor {name!r}: offsets {begin}-{stop} "
                            f"disagree with its shape and type)", False)
        end = max(end, stop)
    data = size - 8 - n
    if end > data:
        return FileKind("safetensors", f"a truncated safetensors file (its tensors need {end:,} bytes after the "
                        f"header; the file has {data:,})", False)
    if end < data:
        return FileKind("safetensors", f"a damaged safetensors file ({data - end:,} bytes more than its tensors "
                        "need)", False)
    clean = {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {}
    return FileKind("safetensors", "a safetensors file", True, clean)


def _zip(path: Path) -> FileKind:
    """A zip archive: a PyTorch checkpoint (``*/data.pkl`` inside), another archive, or a damaged one."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return FileKind("pytorch", "a truncated or damaged zip archive (the container of a PyTorch .pth)", False)
    if any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        return FileKind("pytorch", "a PyTorch checkpoint (zip)")
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return FileKind("other", f"a zip archive without data.pkl, unlike a PyTorch .pth (it holds "
                    f"{shown or 'nothing'}; unpack it first?)", False)


def _as_text(head: bytes) -> str | None:
    """``head`` as text when it reads as UTF-8 without control characters (a cut last character allowed)."""
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 3:
            return None
        text = head[: err.start].decode("utf-8")
    text = text.removeprefix("\ufeff")
    control = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f")
    return text if text.strip() and control <= len(text) // 100 else None


def _describe_text(text: str, path: Path) -> str:
    start = text.lstrip()
    low = start[:1024].lower()
    if low.startswith("<!doctype html") or low.startswith("<html") or (low.startswith("<") and "<html" in low):
        return "an HTML page (what a failed or blocked download saves)"
    if start.startswith("version https://git-lfs"):
        return "a Git LFS pointer (the weights were never fetched: run `git lfs pull`)"
    if start.startswith("<?xml") or start.startswith("<"):
        return "an XML / markup file"
    if start.startswith(("{", "[")):
        if re.search(r'"format"\s*:\s*"exda-checkpoint', start):
            beside = f" (pass {path.with_suffix('.safetensors').name} beside it)" if path.suffix == ".json" else ""
            return f"an exda checkpoint's JSON record, not its weights{beside}"
        return "JSON text"
    first = start.splitlines()[0] if start else ""
    first = first if len(first) <= 40 else first[:37] + "..."
    return f"a text file (starting {first!r})"
