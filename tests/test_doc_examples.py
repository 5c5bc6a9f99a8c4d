"""The examples of "Use inside other frameworks" (docs/frameworks.rst, which
README's section of that name points to) run as written (each block's own
asserts check it against fastdrop.dropout), and README's quick start."""

import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FRAMEWORKS = ROOT / "docs" / "frameworks.rst"


def _section_blocks():
    """{section's first word: [(language, code), ...]} of docs/frameworks.rst."""
    text = FRAMEWORKS.read_text()
    out = {}
    for part in re.split(r"\n(?=[^\n]+\n-{3,}\n)", text)[1:]:
        title = part.split("\n", 1)[0].split()[0]
        blocks = re.findall(r"\.\. code-block:: (\w+)\n\n((?:   .*\n|\n)+)", part)
        out[title] = [(lang, textwrap.dedent(code)) for lang, code in blocks]
    return out


BLOCKS = _section_blocks()


def test_section_has_every_framework():
    assert set(BLOCKS) == {"PyTorch", "Dask", "Numba", "Cython", "JAX", "Keras"}


@pytest.mark.parametrize("title,needs", [("PyTorch", "torch"), ("Dask", "dask"),
                                         ("Numba", "numba"), ("JAX", "jax")])
def test_python_example_runs(title, needs):
    pytest.importorskip(needs)
    (lang, code), = BLOCKS[title]
    assert lang == "python"
    exec(compile(code, f"frameworks.rst:{title}", "exec"), {"__name__": "readme_example"})


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_keras_example_runs(backend, tmp_path):
    """Keras picks its backend at import: the block runs in a fresh process
    (importing keras here would pick the one its config names)."""
    import importlib.util
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed")
    pytest.importorskip(backend)
    (lang, code), = BLOCKS["Keras"]
    assert lang == "python"
    script = tmp_path / "keras_example.py"
    script.write_text(code)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=600, env={**os.environ, "KERAS_BACKEND": backend})
    assert r.returncode == 0, r.stderr[-3000:]


def test_cython_example_builds_and_runs(tmp_path, c_compiler):
    pytest.importorskip("Cython")
    pytest.importorskip("fastdrop._cython._kernels")
    (l1, pyx), (l2, setup_py), (l3, use) = BLOCKS["Cython"]
    assert (l1, l2, l3) == ("cython", "python", "python")
    (tmp_path / "fd_user.pyx").write_text(pyx)
    (tmp_path / "setup.py").write_text(setup_py)
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"], cwd=tmp_path,
                   check=True, capture_output=True)
    sys.path.insert(0, str(tmp_path))
    sys.modules.pop("fd_user", None)
    try:
        exec(compile(use, "frameworks.rst:Cython", "exec"), {"__name__": "readme_example"})
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("fd_user", None)


def test_quick_start_runs():
    text = README.read_text()
    code = re.search(r"## Quick start\n\n```python\n(.*?)```", text, re.S).group(1)
    ns = {"__name__": "readme_example"}
    exec(compile(code, "README:Quick start", "exec"), ns)
    x, y = ns["x"], ns["y"]
    assert y.shape == x.shape and y.dtype == x.dtype
