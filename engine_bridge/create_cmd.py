"""`avatar-runtime create`: an avatar from one photo, several photos and/or a video."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avatar_runtime.errors import AvatarError, InvalidArgument

from .export_cmd import DEFAULT_DATA_DIR


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "create", help="create an avatar from photos and/or a video of one person (few-shot)")
    p.add_argument("photos", type=Path, nargs="*",
                   help="photos of the person; the first is the main view (hair and bust come from it)")
    p.add_argument("--video", type=Path, help="a short video of the person turning the head")
    p.add_argument("--name", default="", help="display name")
    p.add_argument("--refine", choices=("volume", "volume-tiny"), default="",
                   help="also fit a per-person radiance field (volume: minutes on a CPU, meant for a GPU; "
                        "volume-tiny: a seconds-long check); export it with `export --source volume`")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                   help=f"avatar store (default: ./{DEFAULT_DATA_DIR})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Create; prints the id and which views were used. Exit 0, or 2 on a runtime error."""
    from tqdm import tqdm

    from avatar_runtime.service import AvatarService

    try:
        if not args.photos and args.video is None:
            raise InvalidArgument("give at least one photo or --video")
        photos = [_read(p) for p in args.photos]
        video = _read(args.video) if args.video is not None else b""
        service = AvatarService(args.data_dir)
        with tqdm(total=100, desc="create", unit="%") as bar:
            def progress(stage: str, fraction: float) -> None:
                bar.set_postfix_str(stage)
                bar.update(max(0, round(fraction * 100) - bar.n))

            summary = service.create(photos[0] if photos else b"", args.name, progress=progress,
                                     more_images=photos[1:], video=video, refine=args.refine)
    except AvatarError as err:
        print(f"error ({err.code}): {err.message}", file=sys.stderr)
        return 2
    meta = summary["meta"]
    print(f"created avatar {summary['id']} ({summary['name']})")
    for view in meta.get("views", []):
        print(f"  used    {view['source']} (yaw {view['yaw_deg']:+.0f}, pitch {view['pitch_deg']:+.0f} deg)")
    for skipped in meta.get("skipped", []):
        print(f"  skipped {skipped['source']}: {skipped['reason']}")
    if "volume" in meta:
        v = meta["volume"]
        print(f"  volume refined: {v['steps']} steps in {v['seconds']:.1f} s ({v['ms_per_step']:.0f} ms/step "
              f"on {v['device']}), loss {v['first_loss']:.3f} -> {v['final_loss']:.3f}")
    return 0


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise InvalidArgument(f"cannot read {str(path)!r}: {err.strerror}") from err
