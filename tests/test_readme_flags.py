"""Every flag a script shows in --help is documented in README.md (a flag nobody can find does not exist)."""
from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in REPO.glob("*.py") if "def build_parser" in p.read_text(encoding="utf-8"))


def _parser(script: str) -> argparse.ArgumentParser:
    spec = importlib.util.spec_from_file_location(f"_readme_flags_{Path(script).stem}", REPO / script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a script's dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module.build_parser()


def _documented(flag: str, readme: str) -> bool:
    # underscore spellings are upstream aliases; README documents them once as a rule
    flag = flag.replace("_", "-")
    return re.search(re.escape(flag) + r"(?![\w-])", readme) is not None


def test_scripts_are_found():
    assert {"train_ssd.py", "eval_ssd.py", "onnx_export.py", "run_ssd_example.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_flag_is_in_the_readme(script):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = sorted({s for action in _parser(script)._actions for s in action.option_strings
                      if s.startswith("--") and s != "--help" and not _documented(s, readme)})
    assert not missing, f"{script}: flags missing from README.md: {', '.join(missing)}"


def test_the_check_can_fail():
    assert not _documented("--no-such-flag-anywhere", "use --no-such-flag here")
    assert _documented("--batch_size", "`--batch-size N`")
