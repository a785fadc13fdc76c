"""Files on disk: atomic writes, the one JSON sanitizer and canonical-JSON hash, the one config-file reader,
provenance, the run-folder layout (`RunLayout`: every file name of a run folder), folder locks, progress lines.

The bottom layer: it imports only the standard library, torch, numpy, yaml and `sspnet._version`, never another
sspnet subpackage.
"""

from sspnet.io.files import (
    append_line,
    atomic_torch_save,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    git_hash,
    provenance,
)
from sspnet.io.jsonio import canonical_hash, read_mapping_file, to_jsonable
from sspnet.io.runlayout import RunLayout

__all__ = [
    "RunLayout",
    "append_line",
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "canonical_hash",
    "git_hash",
    "provenance",
    "read_mapping_file",
    "to_jsonable",
]
