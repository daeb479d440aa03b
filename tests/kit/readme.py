"""README's Keystone section, read by the tests that check it says what is true."""

from __future__ import annotations

import re

from tests.kit.paths import REPO

README = REPO / "README.md"


def keystone_section() -> str:
    text = README.read_text()
    start = text.index("## Running behind Keystone")
    return text[start : text.index("\n## ", start + 1)]


def yaml_block(starting_with: str) -> str:
    """The ```yaml block of the Keystone section whose first line starts so."""
    for block in re.findall(r"```yaml\n(.*?)```", keystone_section(), re.S):
        if block.startswith(starting_with):
            return str(block)
    raise AssertionError(f"README's Keystone section has no yaml block starting {starting_with!r}")


def settings_rows() -> list[tuple[str, str]]:
    """(variable, default as written) for every variable the table names."""
    rows = []
    for line in keystone_section().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`SHAREMIG_"):
            continue
        names = re.findall(r"`([A-Z_]+)`", cells[0])
        defaults = [d.strip().strip("`") for d in cells[1].split(",")]
        if len(defaults) == 1:
            defaults *= len(names)
        prefix = "_".join(names[0].split("_")[:2])  # `_PASSWORD` after SHAREMIG_KEYSTONE_…
        full = [n if n.startswith("SHAREMIG_") else prefix + n for n in names]
        rows += list(zip(full, defaults, strict=True))
    return rows
