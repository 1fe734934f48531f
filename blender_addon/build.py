"""Build the Blender extension zip with its dependencies bundled as wheels.

    python blender_addon/build.py            # -> blender_addon/dist/avatar_runtime_blender-<version>.zip

Downloads pyzmq and msgpack wheels for CPython 3.11 (the Python of Blender 4.2 to 5.0) on
Linux x86_64, Windows amd64 and macOS arm64 / x86_64 with `pip download --only-binary`,
into the extension's wheels/ folder, which doubles as the cache: a wheel already there is
found by an offline pass first, so only missing ones are fetched from PyPI. The
manifest's `wheels = [...]` list is rewritten to match, then the extension folder is
zipped the way `blender --command extension build` lays it out (manifest at the root).
Blender installs the wheels itself; nothing runs pip inside Blender.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXTENSION = HERE / "avatar_runtime_blender"
MANIFEST = EXTENSION / "blender_manifest.toml"
PYTHON_VERSION = "3.11"
REQUIREMENTS = ("pyzmq==27.3.0", "msgpack==1.2.4")
# pip --platform tags per target; pip also accepts older manylinux/macOS tags and universal2.
PLATFORMS = {
    "linux-x64": ("manylinux_2_28_x86_64",),
    "windows-x64": ("win_amd64",),
    "macos-arm64": ("macosx_11_0_arm64",),
    "macos-x64": ("macosx_11_0_x86_64",),
}
EXCLUDED_PARTS = {"__pycache__", ".pytest_cache"}
EXCLUDED_SUFFIXES = {".pyc", ".pyo"}


def download_wheels(wheel_dir: Path, offline_only: bool = False) -> list[Path]:
    """The wheels for every platform, from `wheel_dir` when present, else from PyPI."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    wanted: set[Path] = set()
    for target, tags in PLATFORMS.items():
        command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
                   "--only-binary=:all:", "--no-deps", "--python-version", PYTHON_VERSION,
                   "--implementation", "cp", "--dest", str(wheel_dir),
                   *(arg for tag in tags for arg in ("--platform", tag)), *REQUIREMENTS]
        run = subprocess.run([*command, "--no-index", "--find-links", str(wheel_dir)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            if offline_only:
                raise SystemExit(f"wheels for {target} are not in {wheel_dir}:\n{run.stderr}")
            print(f"downloading wheels for {target}")
            run = subprocess.run(command, capture_output=True, text=True)
            if run.returncode != 0:
                raise SystemExit(f"pip download failed for {target}:\n{run.stderr}")
        picked = _picked_wheels(run.stdout, wheel_dir)
        if len(picked) != len(REQUIREMENTS):
            raise SystemExit(f"expected {len(REQUIREMENTS)} wheels for {target}, pip reported "
                             f"{[w.name for w in picked]}:\n{run.stdout}")
        wanted |= picked
    return sorted(wanted)


def _picked_wheels(pip_output: str, wheel_dir: Path) -> set[Path]:
    """The wheel files pip saved or found already downloaded, from its report lines."""
    names = re.findall(r"(?:Saved|File was already downloaded) (\S+\.whl)", pip_output)
    return {wheel_dir / Path(name).name for name in names}


def write_manifest_wheels(wheels: list[Path]) -> None:
    """Make the manifest's `wheels = [...]` list name exactly `wheels` (relative paths)."""
    text = MANIFEST.read_text(encoding="utf-8")
    entries = "".join(f'  "./wheels/{w.name}",\n' for w in wheels)
    new, count = re.subn(r"(?ms)^wheels = \[\n.*?^\]", f"wheels = [\n{entries}]", text)
    if count != 1:
        raise SystemExit(f"{MANIFEST} needs one `wheels = [` ... `]` block")
    if new != text:
        MANIFEST.write_text(new, encoding="utf-8")
        print(f"updated the wheel list in {MANIFEST.relative_to(HERE.parent)}")


def build_zip(wheels: list[Path], out_dir: Path) -> Path:
    """Zip the extension folder (sources, manifest, the listed wheels) into out_dir."""
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    listed = {w.name for w in wheels}
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(EXTENSION.rglob("*")):
            rel = path.relative_to(EXTENSION)
            if path.is_dir() or EXCLUDED_PARTS & set(rel.parts) or path.suffix in EXCLUDED_SUFFIXES:
                continue
            if rel.parts[0] == "wheels" and rel.name not in listed:
                continue  # cached wheels of other versions
            archive.write(path, rel.as_posix())
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "dist", help="output folder (default: %(default)s)")
    parser.add_argument("--offline", action="store_true", help="use cached wheels only; fail if any is missing")
    args = parser.parse_args(argv)
    wheels = download_wheels(EXTENSION / "wheels", offline_only=args.offline)
    write_manifest_wheels(wheels)
    out = build_zip(wheels, args.out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
