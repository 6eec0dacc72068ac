"""Regenerate ``parties/_pb`` from ``protos/smpc/v1/*.proto`` with grpc_tools.protoc.

Usage: ``python scripts/gen_protos.py`` (needs the ``test`` extra: grpcio-tools).

The generated modules are flattened into ``parties/_pb`` and their imports made
package-relative (protoc writes ``from smpc.v1 import smpc_pb2``, which would
resolve to the computation core's ``smpc`` package).  ``tests/unit/test_protos_fresh.py``
regenerates into a temporary directory and fails if the committed files differ.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"
PROTO_PACKAGE = "smpc/v1"
OUT_DIR = ROOT / "parties" / "_pb"

INIT = '''"""Generated gRPC / protobuf modules of the smpc.v1 wire contract.

Do not edit: regenerate with ``python scripts/gen_protos.py`` (see protos/smpc/v1/).
"""
'''


def proto_files() -> list[Path]:
    """The .proto files of the contract, sorted."""
    return sorted((PROTO_ROOT / PROTO_PACKAGE).glob("*.proto"))


def _fix_imports(text: str) -> str:
    # "from smpc.v1 import smpc_pb2 as smpc_dot_v1_dot_smpc__pb2" -> "from . import ..."
    return re.sub(r"^from smpc\.v1 import ", "from . import ", text, flags=re.MULTILINE)


def generate(out_dir: Path) -> list[Path]:
    """Generate the modules into ``out_dir`` (created); returns the files written."""
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    protos = proto_files()
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT / PROTO_PACKAGE}")
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(str(p.relative_to(PROTO_ROOT)) for p in protos),
        ]
        code = protoc.main(args)
        if code != 0:
            raise SystemExit(f"protoc failed with exit code {code}")
        written = []
        for src in sorted((Path(tmp) / PROTO_PACKAGE).iterdir()):
            dst = out_dir / src.name
            dst.write_text(_fix_imports(src.read_text()))
            written.append(dst)
    init = out_dir / "__init__.py"
    init.write_text(INIT)
    written.append(init)
    return written


def main() -> int:
    for path in generate(OUT_DIR):
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
