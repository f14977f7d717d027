"""`make gpu-kit`: what an offline GPU machine lacks for `python -m study sweep`, in one folder.

The GPU machine has Python, torch, torchvision, numpy, pandas, pyarrow, scikit-learn, matplotlib,
tqdm and rich, but no Ray, Optuna or MLflow, and cannot download packages. This writes a folder
(at most 64 MiB, so that it travels in one transfer) to copy there:

- `wheels.tar.xz`: manylinux wheels for that machine's Python of Ray (tune, train), Optuna,
  mlflow-skinny (the sweep writes the store; the UI is left out) with SQLAlchemy and Alembic for
  its sqlite store, and every package they need except the large ones the machine already has.
  Ray's wheel is rebuilt without what the sweep never imports (its Java jars, RLlib, Serve, the
  LLM library, the dashboard's source maps) and stored uncompressed, so that xz packs it well;
- `install.sh` (benchmarks/gpu_kit_install.sh): unpacks the wheels and installs them into a venv
  that also sees the machine's own packages (torch among them);
- `requirements.txt` (what was asked for) and `manifest.txt` (every wheel and its size).

    python -m benchmarks.gpu_kit [--out build/gpu-kit] [--python-version 3.12]

Standard library only (it runs pip as a command), so it works wherever pip reaches the index.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

REQUIREMENTS = (
    "ray[tune,train]==2.60.0",
    "optuna==5.1.0",
    "mlflow-skinny==3.17.2",
    "sqlalchemy==2.1.9",
    "alembic==1.20.1",
)
# large packages the GPU machine has (and torch's own stack): their wheels stay out of the kit
ON_THE_MACHINE = frozenset({"numpy", "pandas", "pyarrow", "torch", "scipy", "scikit_learn"})
# parts of Ray's wheel that the sweep never imports
RAY_LEFT_OUT = ("ray/jars/", "ray/rllib/", "ray/llm/", "ray/serve/")
RAY_LEFT_OUT_SUFFIXES = (".js.map",)
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
    "manylinux_2_5_x86_64",
)
LIMIT_BYTES = 64 * 2**20
INSTALLER = Path(__file__).with_name("gpu_kit_install.sh")


def download(folder: Path, python_version: str) -> list[Path]:
    """Every wheel the requirements need, for CPython `python_version` on manylinux x86-64."""
    folder.mkdir(parents=True, exist_ok=True)
    abi = "cp" + python_version.replace(".", "")
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:"]
    command += ["--python-version", python_version, "--implementation", "cp", "--abi", abi]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    subprocess.run([*command, "--dest", str(folder), *REQUIREMENTS], check=True)
    return sorted(folder.glob("*.whl"))


def project_name(wheel: Path) -> str:
    """A wheel's normalised project name (the part of its file name before the version)."""
    return wheel.name.split("-")[0].lower().replace(".", "_").replace("-", "_")


def slim_ray(wheel: Path, out: Path) -> Path:
    """Ray's wheel without RAY_LEFT_OUT, stored uncompressed (xz packs the kit), RECORD to match."""
    target = out / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as dst:
        kept = [info for info in src.infolist() if not _left_out(info.filename)]
        for info in kept:
            data = src.read(info.filename)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(line for line in lines if not _left_out(line.split(",")[0]))
                data = data.encode()
            info.compress_type = zipfile.ZIP_STORED
            dst.writestr(info, data)
    return target


def _left_out(path: str) -> bool:
    return path.startswith(RAY_LEFT_OUT) or path.endswith(RAY_LEFT_OUT_SUFFIXES)


def build(out: Path, python_version: str, cache: Path) -> int:
    """Write the kit to `out`; its size in bytes."""
    wheels = [w for w in download(cache, python_version) if project_name(w) not in ON_THE_MACHINE]
    if out.exists():
        shutil.rmtree(out)
    staging = out / "wheels"
    staging.mkdir(parents=True)
    for wheel in wheels:
        if project_name(wheel) == "ray":
            slim_ray(wheel, staging)
        else:
            shutil.copy2(wheel, staging)
    manifest = [f"{p.stat().st_size:>10}  {p.name}" for p in sorted(staging.iterdir())]
    with tarfile.open(out / "wheels.tar.xz", "w:xz", preset=6) as tar:
        tar.add(staging, arcname="wheels")
    shutil.rmtree(staging)
    shutil.copy2(INSTALLER, out / "install.sh")
    (out / "requirements.txt").write_text("\n".join(REQUIREMENTS) + "\n")
    (out / "manifest.txt").write_text(
        f"Python {python_version}, {len(wheels)} wheels (bytes before xz):\n"
        + "\n".join(manifest)
        + "\n"
    )
    return sum(p.stat().st_size for p in out.iterdir())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/gpu-kit"))
    parser.add_argument(
        "--python-version", default="3.12", help="the GPU machine's Python (default 3.12)"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="downloaded wheels (default build/gpu-kit-cache/X.Y)",
    )
    args = parser.parse_args(argv)
    cache = args.cache or Path("build/gpu-kit-cache") / args.python_version
    size = build(args.out, args.python_version, cache)
    print(f"{args.out}: {size / 2**20:.1f} MiB (limit {LIMIT_BYTES / 2**20:.0f} MiB)")
    for line in (args.out / "manifest.txt").read_text().splitlines():
        print(f"  {line}")
    if size > LIMIT_BYTES:
        print(f"error: the kit is over {LIMIT_BYTES / 2**20:.0f} MiB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
