"""Runs the README's notebook snippets in one namespace.

The sections "From a notebook" and "Diagnose your own network", in that order (the
second uses the first's imports).

Used by ``make notebook-check``: run it with the interpreter of an environment installed
as the README documents, from a folder outside the checkout, so that ``ntk_limits`` is
the installed package. Prints each snippet's number and wall time; any error fails.
"""

import re
import sys
import time
from pathlib import Path

SECTIONS = ("From a notebook", "Diagnose your own network")


def snippets(readme: str) -> list[str]:
    """The ```python blocks of each of :data:`SECTIONS` (up to the next "## " heading)."""
    blocks = []
    for title in SECTIONS:
        parts = readme.split(f"\n## {title}\n", 1)
        if len(parts) == 2:
            section = parts[1].split("\n## ", 1)[0]
            blocks += re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return blocks


def main(readme_path: str) -> None:
    """Runs every snippet of ``readme_path`` with the installed ``ntk_limits``."""
    import ntk_limits

    where = Path(ntk_limits.__file__).resolve()
    if "site-packages" not in where.parts:
        sys.exit(f"ntk_limits imported from {where}, not from an installed package")
    blocks = snippets(Path(readme_path).read_text(encoding="utf-8"))
    if not blocks:
        sys.exit(f"no ```python block in the sections {SECTIONS} of {readme_path}")
    namespace: dict = {}
    for i, block in enumerate(blocks, 1):
        start = time.perf_counter()
        exec(compile(block, f"README snippet {i}", "exec"), namespace)
        print(f"README snippet {i}/{len(blocks)}: ok ({time.perf_counter() - start:.1f} s)")
    print(f"ntk_limits from {where.parent}")


if __name__ == "__main__":
    main(sys.argv[1])
