"""README.md: its commands are the ones CI runs, its Python runs, its measured numbers are the ones
the committed results give (benchmarks/readme_numbers.py), and it stays a front door (<= 200 lines)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SETUP = ["python3 -m pip install -e . && jaxrecon sweep experiments/law_quick.py --out runs/law",
         "python3 -m pip install -e '.[test]' && python3 -m pytest -q"]


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)


def test_readme_numbers_match_the_committed_results():
    script = ROOT / "benchmarks" / "readme_numbers.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_every_block_is_filled():
    """law_quick (the headline figure's numbers) in README; the study tables in RESULTS.md."""
    where = {"law_quick": ["README.md", "benchmarks/RESULTS.md"], "solve_rate": ["benchmarks/RESULTS.md"],
             "sharp_law": ["benchmarks/RESULTS.md"]}
    for name, files in where.items():
        for file in files:
            text = (ROOT / file).read_text()
            start, end = f"<!-- numbers:{name} -->\n", f"\n<!-- /numbers:{name} -->"
            assert start in text and end in text, f"{file}: {name}"
            assert text.index(end) - text.index(start) > len(start) + 20, f"{file}: {name}: empty block"


def test_the_two_setup_commands_come_first_and_ci_runs_the_second():
    text = README.read_text()
    first = _blocks(text, "bash")[0]
    assert first.splitlines() == SETUP
    assert text.index(first) < text.index("## ")  # before any section
    assert SETUP[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_is_a_front_door():
    assert len(README.read_text().splitlines()) <= 200


def test_readme_links_exist():
    """Every relative link of README.md names a file or folder of the repository."""
    text = README.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)\)", text):
        if "://" in target:
            continue
        assert (ROOT / target).exists(), f"README links to a missing {target}"


@pytest.mark.parametrize("index", [0, 1])
def test_python_snippets_run(index, tmp_path):
    """Each ```python block of README.md runs as it stands, in a fresh interpreter, and shows what
    README says it shows (every training row recovered)."""
    snippets = _blocks(README.read_text(), "python")
    assert len(snippets) == 2
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", snippets[index]], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()
    if index == 0:  # print(result.loss, m.error_abs, m.error_sign, m.recovered), then the seeds
        loss, error_abs, error_sign, recovered = map(float, last[-2].split())
        assert loss < 1e-9 and error_sign < 1e-3 and recovered == 1.0
        assert "adam-lm" in last[-1] and last[-1].count("converged") + last[-1].count("precision") == 4
    else:
        assert "recovered 100%" in last[-1]
    assert not list(tmp_path.iterdir())  # the snippets write no files
