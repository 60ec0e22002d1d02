"""Regenerates the Python stubs in `autoswarm/v1/` from `proto/autoswarm/v1/*.proto`.

Run `python -m autoswarm.protogen` after editing a .proto file and commit the result; a test
regenerates into a temporary directory and fails when the committed stubs differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "proto"


def proto_files() -> list[Path]:
    """The .proto sources of the wire contract, in a stable order."""
    return sorted((PROTO_ROOT / "autoswarm" / "v1").glob("*.proto"))


def generate(out_dir: Path) -> None:
    """Writes `*_pb2.py`, `*_pb2.pyi` and `*_pb2_grpc.py` for every proto file under `out_dir`."""
    from grpc_tools import protoc  # dev-only dependency (grpcio-tools)

    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(PROTO_ROOT)) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")


def main() -> None:
    generate(REPO_ROOT)
    print(f"regenerated stubs for {len(proto_files())} proto files", file=sys.stderr)


if __name__ == "__main__":
    main()
