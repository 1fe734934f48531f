"""Generated protobuf / gRPC modules for `avatar.v1` (written by scripts/gen_protos.py).

The folder mirrors the proto package, so the generated `from avatar.v1 import ...` lines
work unchanged: this file puts the folder on sys.path and re-exports the two modules.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

from avatar.v1 import avatar_runtime_pb2 as pb  # noqa: E402
from avatar.v1 import avatar_runtime_pb2_grpc as pb_grpc  # noqa: E402

__all__ = ["pb", "pb_grpc"]
