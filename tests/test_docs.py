"""The documentation: the site builds strictly, and what the pages cite exists.

The build test needs Sphinx (the ``docs`` extra, ``python3 -m pip install -e '.[docs]'``); the
test extras leave it out, so there it is skipped, saying so. ``.ci/run`` builds the site anyway.
"""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "results"


#: Default output folders of the experiment scripts that no committed run has filled (the pages
#: name them as where a run writes, not as results).
OUTPUT_DEFAULTS = {"fig1_full", "fig1_quick", "fig5_full", "fig5_quick"}


def _cited_results(text: str) -> set:
    """``benchmarks/results/...`` paths (globs allowed) that a text names."""
    found = set()
    for m in re.finditer(r"benchmarks/results/([\w./*-]+)", text):
        path = m.group(1).rstrip(".,)/`'")
        if path and path not in OUTPUT_DEFAULTS:
            found.add(path)
    return found


def _documents() -> dict:
    files = [ROOT / "README.md", ROOT / "benchmarks" / "RESULTS.md", *sorted(DOCS.glob("*.rst")),
             *sorted((DOCS / "api").glob("*.rst"))]
    return {f.relative_to(ROOT).as_posix(): f.read_text() for f in files}


def test_every_cited_results_path_exists():
    """A page that claims a measured result cites a committed results folder: it must exist."""
    missing = []
    for name, text in _documents().items():
        for path in _cited_results(text):
            if not any(RESULTS.glob(path)):
                missing.append(f"{name}: benchmarks/results/{path}")
    assert not missing, missing


def test_every_image_of_the_docs_exists():
    for page in DOCS.glob("*.rst"):
        for target in re.findall(r"^\.\. (?:image|figure):: (\S+)", page.read_text(), re.M):
            assert (page.parent / target).exists(), f"{page.name}: {target}"


def test_results_index_lists_every_committed_folder():
    """benchmarks/results/INDEX.md names every tracked entry of benchmarks/results (and archive/)."""
    tracked = subprocess.run(["git", "ls-files", "benchmarks/results"], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout: no list of committed results")
    entries = set()
    for f in tracked:
        parts = Path(f).parts[2:]
        if parts[0] == "INDEX.md":
            continue
        entries.add("/".join(parts[:2]) if parts[0] == "archive" else parts[0])
    listed = set(re.findall(r"^\| `([^`]+)` \|", (RESULTS / "INDEX.md").read_text(), re.M))
    assert sorted(entries - listed) == [], "add these to benchmarks/results/INDEX.md"
    assert [e for e in sorted(listed) if not (RESULTS / e).exists()] == [], "INDEX.md lists folders that do not exist"


def test_results_md_is_current_tables_not_a_lab_notebook():
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    assert len(text.splitlines()) <= 400
    assert "benchmarks/HISTORY.md" in text and (ROOT / "benchmarks" / "HISTORY.md").exists()


def test_markdown_conversion_of_tables_code_and_links():
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import mdrst
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    rst = mdrst.convert("## Title\n\n| a | `b` |\n|---|---:|\n| 1 | x`s`y |\n\nsee [the docs](https://x.org) and `f`s.\n",
                        level_offset=1)
    assert "Title\n~~~~~" in rst
    assert ".. list-table::" in rst and "   * - a\n     - ``b``" in rst and "x\\ ``s``\\ y" in rst
    assert "`the docs <https://x.org>`__" in rst and "``f``\\ s." in rst


@pytest.mark.slow
def test_docs_build_strictly(tmp_path):
    """``python3 -m sphinx -W --keep-going -b html docs OUT``: no warning, every page and the API."""
    if importlib.util.find_spec("sphinx") is None:
        pytest.skip("Sphinx is not installed (python3 -m pip install -e '.[docs]'); .ci/run builds the docs")
    out = tmp_path / "html"
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-5000:]
    for page in ["index", "getting_started", "concepts", "methods", "reproducing", "sweeps", "networks",
                 "real_images", "scale", "privacy", "theory", "notebooks", "changelog", "api/index"]:
        assert (out / f"{page}.html").exists(), page
    api = (out / "api" / "index.html").read_text()
    import jaxrecon

    for name in jaxrecon.__all__:
        if name != "__version__":
            assert f'id="jaxrecon.{name}"' in api, name
    assert 'id="jaxrecon.attack.auto.choice"' in (out / "_generated" / "api" / "attack.html").read_text()
    first = next(line[3:].strip() for line in (ROOT / "CHANGELOG.md").read_text().splitlines() if line.startswith("## "))
    assert first in (out / "changelog.html").read_text()  # the changelog page is CHANGELOG.md's
