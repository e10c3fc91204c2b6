"""Generates the Python code of the contracts (package ``sscard``) into gen/.

Run by `make protos` and by setup.py, so that an editable install and the wheel carry the
generated code: ``python protos/generate.py`` from the repository root (needs grpcio-tools).
"""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
GEN = ROOT / "gen"


def generate() -> None:
    shutil.rmtree(GEN / "sscard", ignore_errors=True)
    (GEN / "sscard").mkdir(parents=True)
    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "sscard").rglob("*.proto"))
    well_known = resources.files("grpc_tools") / "_proto"  # google/protobuf/*.proto
    args = ["protoc", f"-I{PROTOS}", f"-I{well_known}", f"--python_out={GEN}"]
    args += [f"--grpc_python_out={GEN}", f"--pyi_out={GEN}"]
    if protoc.main([*args, *sources]) != 0:
        sys.exit("protoc failed")
    for folder in [GEN / "sscard", *(p for p in (GEN / "sscard").rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    (GEN / "sscard" / "py.typed").touch()
    (GEN / ".generated").touch()


if __name__ == "__main__":
    generate()
