"""Files on disk: atomic writes, the one JSON sanitizer, the one config-file reader, provenance, safe torch loads.

The bottom layer: it imports only the standard library, torch, numpy and yaml, never another sspnet subpackage.
"""
from sspnet.io.files import append_line, atomic_torch_save, atomic_write, atomic_write_bytes, atomic_write_json, \
    atomic_write_text, git_hash, provenance
from sspnet.io.jsonio import read_mapping_file, to_jsonable

__all__ = ["append_line", "atomic_torch_save", "atomic_write", "atomic_write_bytes", "atomic_write_json",
           "atomic_write_text", "git_hash", "provenance", "read_mapping_file", "to_jsonable"]
