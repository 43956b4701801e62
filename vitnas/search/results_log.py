"""``results.jsonl``: every evaluated candidate, one JSON line each, appended as results arrive.

The log is the search's source of truth for resuming: each line is flushed and fsynced
before the search goes on, so a kill loses at most the evaluations in flight. A resumed
search replays the algorithm from its seed and takes every result found here instead of
evaluating again; a line cut short by a kill is dropped (and cut off the file) on reading.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from vitnas.errors import ArchError, VitnasError
from vitnas.space.arch import Arch
from vitnas.util.atomic import reporting_disk_full

__all__ = ["ResultsLog"]

logger = logging.getLogger(__name__)


class ResultsLog:
    """Appends candidate records to a JSONL file and reads them back, keyed by arch."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self) -> dict[Arch, dict[str, Any]]:
        """Every complete record, keyed by its arch (the first record of an arch wins).

        A last line without its newline is what a kill mid-write leaves: it is dropped
        and the file is truncated to its complete lines, so later appends stay valid JSONL.

        Raises:
            VitnasError: a complete line is not a record (naming the file and line).
        """
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) < len(data):
            logger.warning("%s: dropping a last line cut short (%d bytes)", self.path, len(data) - len(complete))
            with open(self.path, "r+b") as handle:
                handle.truncate(len(complete))
        records: dict[Arch, dict[str, Any]] = {}
        for number, line in enumerate(complete.decode().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                arch = Arch.from_dict(record["arch"])
                float(record["accuracy"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, ArchError) as error:
                raise VitnasError(f"{self.path} line {number}: not a search record ({error})") from None
            records.setdefault(arch, record)
        return records

    def append(self, record: Mapping[str, Any]) -> None:
        """Writes one record as a line and makes it durable before returning.

        Raises:
            VitnasError: the disk is full (a part line it leaves is dropped on the next `read`).
        """
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with reporting_disk_full(f"{self.path} (the results before it are kept)"), open(self.path, "a") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
