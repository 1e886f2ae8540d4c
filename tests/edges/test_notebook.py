"""Issue 12 item 8 (notebooks): functions, helpers, imports and classes defined in the cells of a
real Jupyter notebook (executed by nbclient on an ipykernel of this Python) run on the local
backend with every strategy (cloudpickle with the same Python; source, including a Python 3.6
remote), and exceptions and values come back as the notebook's own classes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.edges.conftest import ROOT

CELLS = Path(__file__).parent / "data" / "notebook_cells.txt"


def _kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel spec for this interpreter, in a private JUPYTER_PATH."""
    spec = tmp_path / "jupyter" / "kernels" / "clustrix-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps(
            {
                "argv": argv,
                "display_name": "clustrix test",
                "language": "python",
                "env": {"PYTHONPATH": str(ROOT)},
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    return "clustrix-test"


def run_notebook(cells: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Execute a notebook of ``cells``; the text its cells printed."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    kernel = _kernel(tmp_path, monkeypatch)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(text) for text in cells]
    client = nbclient.NotebookClient(
        nb, kernel_name=kernel, timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    nbformat.write(nb, str(tmp_path / "executed.ipynb"))
    return "".join(
        out.get("text", "")
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.get("output_type") == "stream"
    )


def test_notebook_cells_run_with_every_strategy(
    strategy: tuple[str, dict[str, Any], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile, overrides, kind = strategy
    cells = CELLS.read_text().split("# %%\n")[1:]
    first = f"PROFILE = {profile!r}\nOVERRIDES = {overrides!r}\n"
    text = run_notebook([first, *cells], tmp_path, monkeypatch)
    line = [ln for ln in text.splitlines() if ln.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT ") :])
    assert out["work"] == [True, 4, 4, 6.0, True, "__main__"], kind
    assert out["boom"] == [True, "bad 7", True], kind
    assert out["deep"] == [True, True, 4, "Vec3"], kind
    assert out["map"] == [11, 12], kind
