"""Tests mirror the code: every library module has its test module at the mirrored path.

``src/ntk_limits/<pkg>/<module>.py`` (or ``_<module>.py``) is tested by
``tests/<pkg>/test_<module>.py``; a new library module without one fails here.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "src" / "ntk_limits"
# Library modules whose test module has another name, and why.
RENAMED = {
    "kernels/_nt.py": "kernels/test_nt_adapter.py",  # the neural-tangents adapter
}


def _expected_test(module: Path) -> str:
    rel = module.relative_to(LIBRARY).as_posix()
    if rel in RENAMED:
        return RENAMED[rel]
    return (Path(rel).parent / f"test_{module.stem.lstrip('_')}.py").as_posix()


def test_every_library_module_has_its_mirrored_test_module():
    modules = [p for p in LIBRARY.rglob("*.py") if p.name != "__init__.py"]
    assert len(modules) > 20  # the walk found the library
    missing = sorted(t for t in map(_expected_test, modules) if not (ROOT / "tests" / t).is_file())
    assert missing == []
