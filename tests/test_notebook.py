"""The notebooks execute top to bottom (nbclient), show their figures and write no files."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK = NOTEBOOKS / "quickstart.ipynb"


def _execute(path, tmp_path):
    """Outputs of every code cell of the notebook at ``path``, run from scratch in ``tmp_path``."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # start from a clean notebook: outputs must come from this run
        if cell.cell_type == "code":
            cell.outputs = []
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on any failing cell
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def test_quickstart_notebook_executes(tmp_path):
    outputs = _execute(NOTEBOOK, tmp_path)
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "error_abs" in text and "the law says" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert not list(tmp_path.iterdir())  # the notebook writes no files


def test_privacy_notebook_executes(tmp_path):
    """Attack, defence (noise on theta at two strengths), trade-off and theory, on the photographs."""
    outputs = _execute(NOTEBOOKS / "privacy.ipynb", tmp_path)
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "no defence:" in text and "recovered 100%" in text  # the undefended release leaks
    assert text.count("noise ") == 3 and "symmetry: relu-like" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3  # clean, noisy, trade-off
    assert not list(tmp_path.iterdir())
