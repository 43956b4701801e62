"""The export folder's contract: file names, the format version, and reading ``config.json`` safely.

An export folder is read by people and programs that never saw the supernet, often
after a copy, a download or a hand edit, so every way it can be wrong is reported in
one line naming the file and the field. This module needs only the standard library:
`vitnas.load` reads the folder with it before touching torch.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from vitnas.errors import ExportError
from vitnas.util.fields import require_int

__all__ = [
    "CONFIG_FILE",
    "ELASTIC",
    "FORMAT",
    "FORMATS",
    "FORMAT_VERSION",
    "KINDS",
    "MODEL_FORMATS",
    "PLAIN",
    "WEIGHTS_FILE",
    "file_entry",
    "read_config",
    "sha256_hex",
    "weights_entry",
    "write_json",
]

FORMAT = "vitnas.export"  # config.json's "format": what kind of folder this is
FORMAT_VERSION = 1  # bumped when a reader of an older version would misread a newer folder
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# config.json's "kind": one model (the default; plain folders do not write it), or an elastic bundle of named
# operating points sharing one weight envelope (vitnas.export.elastic).
PLAIN, ELASTIC = "plain", "elastic"
KINDS = (PLAIN, ELASTIC)
# The forms `vitnas export` writes, in the order it writes them: the one list every CLI and check derives from
# (here, not in the writer, because the CLIs read it without importing torch). safetensors is always written,
# since vitnas.load reads it; elastic is one bundle of every budget of a search rather than one model.
FORMATS = ("safetensors", "timm", "torchscript", "onnx", ELASTIC)
MODEL_FORMATS = tuple(name for name in FORMATS if name != ELASTIC)  # the forms of one model's folder
_REQUIRED = {PLAIN: ("model", "weights"), ELASTIC: ("points", "weights")}  # the load-critical fields of each kind

_SHA256 = re.compile(r"[0-9a-f]{64}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    """How config.json records a file it vouches for: name, size and SHA-256."""
    data = path.read_bytes()
    return {"file": path.name, "bytes": len(data), "sha256": sha256_hex(data)}


def read_config(folder: Path) -> dict[str, Any]:
    """The parsed ``config.json`` of export folder `folder`, its load-critical fields checked.

    Checks the folder, that the file is JSON, the format name and version, the kind
    (plain or elastic), that the kind's fields are there (``model`` or ``points``) and
    the ``weights`` entry; `vitnas.nn.vit.ViTConfig.from_dict` checks the model fields
    themselves.

    Raises:
        ExportError: one line naming the folder or file and what is wrong.
    """
    if not folder.exists():
        raise ExportError(f"{folder}: no such export folder")
    if not folder.is_dir():
        raise ExportError(f"{folder}: is not a folder (vitnas.load takes an export folder)")
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise ExportError(f"{folder}: no {CONFIG_FILE} (not a vitnas export folder)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ExportError(f"{path}: not valid JSON ({error.msg} at line {error.lineno} column {error.colno})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ExportError(f"{path}: cannot be read ({error})") from None
    if not isinstance(data, dict):
        raise ExportError(f"{path}: expected a JSON object, got {type(data).__name__}")
    _check_format(data, path)
    kind = data.get("kind", PLAIN)
    if kind not in KINDS:
        raise ExportError(f"{path}: kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    for field in _REQUIRED[kind]:
        if field not in data:
            raise ExportError(f"{path}: missing field {field!r}")
    weights_entry(data, path)
    return data


def _check_format(data: dict[str, Any], path: Path) -> None:
    for field in ("format", "format_version"):
        if field not in data:
            raise ExportError(f"{path}: missing field {field!r}")
    if data["format"] != FORMAT:
        raise ExportError(f"{path}: format is {data['format']!r}, not {FORMAT!r}")
    version = data["format_version"]
    require_int(f"{path}: format_version", version, ExportError)
    if version > FORMAT_VERSION:
        raise ExportError(f"{path}: format version {version} is newer than this vitnas reads ({FORMAT_VERSION}); "
                          f"upgrade vitnas to load it")


def weights_entry(data: dict[str, Any], path: Path) -> tuple[str, int, str]:
    """The weights file's (name, byte count, SHA-256) from config.json, each checked.

    The name must be a plain file name: a config must not make `vitnas.load` read
    files outside its folder.
    """
    entry = data["weights"]
    if not isinstance(entry, dict):
        raise ExportError(f"{path}: weights: expected an object, got {type(entry).__name__}")
    for field in ("file", "bytes", "sha256"):
        if field not in entry:
            raise ExportError(f"{path}: weights: missing field {field!r}")
    name, size, digest = entry["file"], entry["bytes"], entry["sha256"]
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise ExportError(f"{path}: weights.file: expected a file name inside the folder, got {name!r}")
    require_int(f"{path}: weights.bytes", size, ExportError, low=0, what="a byte count")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise ExportError(f"{path}: weights.sha256: expected 64 lowercase hex digits, got {digest!r}")
    return name, size, digest


def write_json(path: Path, data: dict[str, Any]) -> None:
    """config.json as every export writes it: indented one space, a newline at the end."""
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
