"""The release files agree with the package metadata, every test module has a tier, and flax is optional.

Fast: nothing is built here (``.ci/run`` builds the sdist and the wheel and installs the wheel in a
fresh virtual environment).
"""

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import conftest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _version() -> str:
    tree = ast.parse((ROOT / "jaxrecon" / "_version.py").read_text())
    return next(n.value.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "__version__")


def _cff() -> dict:
    """CITATION.cff's top-level ``key: value`` lines (quotes stripped), and the whole text."""
    text = (ROOT / "CITATION.cff").read_text()
    keys = {}
    for line in text.splitlines():
        m = re.match(r"([a-z][a-z-]*):\s*(.*)$", line)
        if m:
            keys[m.group(1)] = m.group(2).strip().strip('"')
    return {"keys": keys, "text": text}


def test_version_is_0x_and_agrees_everywhere():
    import jaxrecon

    version = _version()
    assert re.fullmatch(r"0\.\d+\.\d+", version)
    assert jaxrecon.__version__ == version
    assert _cff()["keys"]["version"] == version
    changelog = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## (\d+\.\d+\.\d+)", changelog, re.M)
    assert headings[0] == version and "0.1.0" in headings  # newest first, the first release kept


def test_license_file_and_metadata():
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) > 150  # the whole text
    assert _cff()["keys"]["license"] == "Apache-2.0"
    classifiers = project["classifiers"]
    assert "Development Status :: 3 - Alpha" in classifiers and "Operating System :: OS Independent" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # the SPDX expression says it (PEP 639)


def test_citation_names_the_paper_and_this_software():
    cff = _cff()
    keys, text = cff["keys"], cff["text"]
    assert keys["cff-version"] == "1.2.0" and keys["type"] == "software" and "message" in keys
    assert "preferred-citation:" in text and "arXiv:2509.22214" in text
    assert "A Law of Data Reconstruction for Random Features (and Beyond)" in text
    for name in ("Iurada", "Bombari", "Tommasi", "Mondelli"):
        assert f"family-names: {name}" in text
    assert re.search(r"^  year: 2026$", text, re.M) and "ICLR" in text


def test_extras_keep_flax_out_of_the_core():
    project = PYPROJECT["project"]
    assert not [d for d in project["dependencies"] if d.startswith("flax")]
    extras = project["optional-dependencies"]
    assert any(d.startswith("flax") for d in extras["networks"])
    assert "jaxrecon[networks,notebooks]" in extras["test"]
    assert any(d.startswith("pytest-timeout") for d in extras["test"])
    assert any(d.startswith("nbconvert") for d in extras["notebooks"])
    assert any(d.startswith("sphinx") for d in extras["docs"]) and "jaxrecon[networks]" in extras["docs"]
    pytest_ini = PYPROJECT["tool"]["pytest"]["ini_options"]
    assert int(pytest_ini["timeout"]) > 0 and int(pytest_ini["session_timeout"]) > int(pytest_ini["timeout"])
    assert any(m.startswith("e2e:") for m in pytest_ini["markers"])


def test_every_test_module_has_a_tier_and_named_e2e_tests_exist():
    modules = {p.stem: p for p in (ROOT / "tests").glob("test_*.py")}
    e2e, fast = set(conftest.E2E), set(conftest.FAST_MODULES)
    assert not e2e & fast, "a module is listed as both e2e and fast"
    assert sorted(set(modules) - e2e - fast) == [], "classify new test modules in tests/conftest.py"
    assert sorted((e2e | fast) - set(modules)) == [], "tests/conftest.py lists modules that do not exist"
    for module, names in conftest.E2E.items():
        if names == conftest.ALL:
            continue
        defined = {n.name for n in ast.walk(ast.parse(modules[module].read_text()))
                   if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
        assert sorted({n.partition("[")[0] for n in names} - defined) == [], f"{module}: E2E names missing tests"
    assert conftest.is_e2e("test_notebook", "test_anything") and not conftest.is_e2e("test_loss", "test_x")


#: Runs with flax unimportable, as when the networks extra is not installed.
NO_FLAX = "import sys; sys.modules['flax'] = None\n"


def _no_flax(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_FLAX + code], capture_output=True, text=True, timeout=240,
                          cwd=ROOT)


def test_jaxrecon_imports_without_flax_and_a_network_model_names_the_extra():
    r = _no_flax("""
import jaxrecon as jr
for name in jr.__all__:  # every public name resolves
    getattr(jr, name)
import jaxrecon.cli, jaxrecon.sweeps, jaxrecon.runner, jaxrecon.features, jaxrecon.models
from jaxrecon.io import versions
assert versions()["flax"] is None
try:
    import jaxrecon.models.train
except ImportError as e:
    print("ERROR", type(e).__name__, e)
from jaxrecon.cli import main
sys.exit(main(["reconstruct", "--model", "two_layer", "--d", "6", "--n", "2", "--width", "8", "--no-save"]))
""")
    assert r.returncode == 2, r.stderr
    assert "ERROR MissingExtra the network models" in r.stdout and "pip install 'jaxrecon[networks]'" in r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxrecon: error: ") and "--model" in lines[0]
    assert "pip install 'jaxrecon[networks]'" in lines[0] and "Traceback" not in r.stderr
