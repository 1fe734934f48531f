"""`avatar-runtime export`: write an avatar (stored, or made from a photo) as glb/obj/ply."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from avatar_runtime.errors import AvatarError, InvalidArgument

DEFAULT_DATA_DIR = Path("avatar_store")


def add_parser(subparsers) -> None:
    """Register the `export` subcommand on an argparse subparsers object."""
    from avatar_runtime.mesh.export import FORMATS  # light import: no models loaded

    p = subparsers.add_parser("export", help="export an avatar as a rigged glTF, OBJ or PLY mesh")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("avatar_id", nargs="?", help="id of a stored avatar")
    source.add_argument("--image", type=Path, help="create the avatar from this photo first")
    p.add_argument("--format", required=True, choices=FORMATS, help="output format")
    p.add_argument("--out", type=Path, required=True,
                   help="output file (.glb/.obj/.ply; OBJ writes .mtl and .png beside it)")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                   help=f"avatar store (default: ./{DEFAULT_DATA_DIR})")
    p.add_argument("--source", choices=("mesh", "volume"), default="mesh",
                   help="mesh: the rigged head (default); volume: the surface of the avatar's radiance "
                        "field (portrait4d avatars, or created with --refine volume; glb only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export; prints the files written. Exit 0 on success, 2 on a runtime error."""
    from avatar_runtime.mesh.export import export_avatar
    from avatar_runtime.service import AvatarService

    try:
        service = AvatarService(args.data_dir)
        avatar_id = args.avatar_id or _create(service, args.image)
        started = time.perf_counter()
        if args.source == "volume":
            paths = _export_volume(service, avatar_id, args.format, args.out)
        else:
            paths = export_avatar(service.avatar(avatar_id), service.head, args.format, args.out)
    except AvatarError as err:
        print(f"error ({err.code}): {err.message}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    for path in paths:
        print(f"{path} ({path.stat().st_size / 1e6:.2f} MB)")
    print(f"exported avatar {avatar_id} as {args.format} in {elapsed:.2f} s")
    return 0


def _export_volume(service, avatar_id: str, format: str, out: Path) -> list[Path]:
    from avatar_runtime.mesh.files import write_atomically

    if out.suffix.lower() != ".glb" or format != "glb":
        raise InvalidArgument("volume export writes glb only: use --format glb and a .glb --out")
    files = service.export_mesh(avatar_id, "glb", source="volume")
    write_atomically({out: next(iter(files.values()))})
    return [out]


def _create(service, image: Path) -> str:
    """Create (or find, for a photo seen before) the avatar for `image`; returns its id."""
    try:
        data = image.read_bytes()
    except OSError as err:
        raise InvalidArgument(f"cannot read image {str(image)!r}: {err.strerror}") from err
    summary = service.create(data)
    print(f"created avatar {summary['id']} from {image}")
    return summary["id"]
