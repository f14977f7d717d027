"""The GPU kit's slimmed Ray wheel: the parts the sweep never imports are gone, RECORD matches."""

from __future__ import annotations

import zipfile
from pathlib import Path

from benchmarks.gpu_kit import ON_THE_MACHINE, project_name, slim_ray

FILES = {
    "ray/__init__.py": b"version = '2.60.0'\n",
    "ray/jars/ray_dist.jar": b"java",
    "ray/rllib/algorithm.py": b"rl",
    "ray/serve/api.py": b"serve",
    "ray/llm/api.py": b"llm",
    "ray/dashboard/client/build/main.js": b"js",
    "ray/dashboard/client/build/main.js.map": b"map",
    "ray/tune/__init__.py": b"tune",
    "ray-2.60.0.dist-info/METADATA": b"Name: ray\nVersion: 2.60.0\n",
}
KEPT = {"ray/__init__.py", "ray/dashboard/client/build/main.js", "ray/tune/__init__.py"}
RECORD = "ray-2.60.0.dist-info/RECORD"


def test_slim_ray_leaves_out_what_the_sweep_never_imports(tmp_path: Path):
    wheel = tmp_path / "src" / "ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in FILES.items():
            z.writestr(name, data)
        z.writestr(RECORD, "".join(f"{name},sha256=x,{len(d)}\n" for name, d in FILES.items()))
    slim = slim_ray(wheel, tmp_path)
    assert slim == tmp_path / wheel.name
    with zipfile.ZipFile(slim) as z:
        assert set(z.namelist()) == KEPT | {"ray-2.60.0.dist-info/METADATA", RECORD}
        assert {info.compress_type for info in z.infolist()} == {zipfile.ZIP_STORED}
        recorded = {line.split(",")[0] for line in z.read(RECORD).decode().splitlines()}
        assert recorded == KEPT | {"ray-2.60.0.dist-info/METADATA"}
        assert z.read("ray/tune/__init__.py") == b"tune"


def test_wheels_of_packages_the_gpu_machine_has_are_recognised_by_name():
    names = [
        "numpy-2.5.5-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        "scikit_learn-1.9.1-cp312-cp312-manylinux_2_27_x86_64.whl",
        "pyarrow-26.0.1-cp312-cp312-manylinux_2_28_x86_64.whl",
    ]
    assert {project_name(Path(name)) for name in names} <= ON_THE_MACHINE
    assert project_name(Path("mlflow_skinny-3.17.2-py3-none-any.whl")) not in ON_THE_MACHINE
