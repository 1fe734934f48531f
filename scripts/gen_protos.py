"""Regenerate the Python gRPC/protobuf modules from protos/ (never edit the output).

    python scripts/gen_protos.py            # writes engine_bridge/generated/
    python scripts/gen_protos.py --out DIR  # writes DIR (tests diff it against the checked-in copy)

protoc runs from the repository root with relative paths only, so the generated files are
byte-identical on every machine. The output folder mirrors the proto package (avatar/v1),
so the generated `from avatar.v1 import ...` lines work unchanged once
`engine_bridge/generated` is on sys.path (engine_bridge/generated/__init__.py does that).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = "protos"
PROTOS = ("avatar/v1/avatar_runtime.proto",)
DEFAULT_OUT = "engine_bridge/generated"
PACKAGE_DIRS = ("avatar", "avatar/v1")


def generate(out: str | Path = DEFAULT_OUT) -> Path:
    """Run grpc_tools.protoc into `out` (relative to the repo root unless absolute)."""
    from grpc_tools import protoc  # dev/test extra only

    os.chdir(REPO)
    out_dir = Path(out)
    out_rel = os.path.relpath(out_dir if out_dir.is_absolute() else REPO / out_dir, REPO)
    Path(out_rel).mkdir(parents=True, exist_ok=True)
    args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"--python_out={out_rel}",
            f"--pyi_out={out_rel}", f"--grpc_python_out={out_rel}", *PROTOS]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed: {' '.join(args)}")
    for package in PACKAGE_DIRS:
        (Path(out_rel) / package / "__init__.py").write_text("")
    return REPO / out_rel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    print(generate(parser.parse_args(argv).out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
