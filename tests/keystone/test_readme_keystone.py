"""README's "Running behind Keystone" says what is true: its settings table matches the
settings' names and defaults, and its `policy.yaml` example passes `sharemig policy check` and
does what the text says (a `migrator` role may run the four migration actions, nothing else).
The `clouds.yaml` example is the one the openstack CLI test (test_keystone_auth) runs with."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from kit.keystone import BIN

README = Path(__file__).resolve().parents[2] / "README.md"
MIGRATION_RULES = [f"share:migration_{a}" for a in ("start", "complete", "cancel", "get_progress")]


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


def test_the_settings_table_names_real_settings_and_their_defaults() -> None:
    from storage.settings import Settings

    rows = settings_rows()
    assert len(rows) >= 10, rows
    for name, written in rows:
        field = name.removeprefix("SHAREMIG_").lower()
        assert field in Settings.model_fields, f"README names {name}, which is no setting"
        default = Settings.model_fields[field].default
        if field == "policy_file":
            assert default is None and "if present" in written  # home/policy.yaml when present
            continue
        shown = "none" if default is None else str(default)
        assert shown == written, f"README says {name} defaults to {written}, it is {shown}"


def test_the_policy_example_passes_the_check_and_lets_migrators_migrate(tmp_path: Path) -> None:
    from api_shim.policy import Policy
    from storage.tokens import TokenInfo

    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml_block('"share:migration_start"'))
    done = subprocess.run(
        [str(BIN / "sharemig"), "policy", "check", str(policy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(yaml.safe_load(policy.read_text())) == sorted(MIGRATION_RULES)
    rules = Policy(policy)
    migrator = TokenInfo(project_id="demo", roles=("migrator",))
    member = TokenInfo(project_id="demo", roles=("member",))
    for rule in MIGRATION_RULES:
        assert rules.allows(rule, migrator)
        assert not rules.allows(rule, member)
    assert not rules.allows("share:reset_task_state", migrator)
    assert not rules.allows("share_type:create", migrator)
