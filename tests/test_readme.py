"""README.md's measured numbers are the ones the committed results give (benchmarks/readme_numbers.py)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_numbers_match_the_committed_results():
    script = ROOT / "benchmarks" / "readme_numbers.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_every_block_is_filled():
    text = (ROOT / "README.md").read_text()
    for name in ("law_quick", "solve_rate", "sharp_law"):
        start, end = f"<!-- numbers:{name} -->\n", f"\n<!-- /numbers:{name} -->"
        assert start in text and end in text, name
        assert text.index(end) - text.index(start) > len(start) + 20, f"{name}: empty block"
