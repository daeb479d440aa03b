"""README's "Running behind Keystone" says what is true: its settings table matches the
settings' names and defaults, and its `policy.yaml` example passes `sharemig policy check` and
does what the text says (a `migrator` role may run the four migration actions, nothing else).
The `clouds.yaml` example is the one the openstack CLI test (test_keystone_auth) runs with."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.kit.keystone import BIN
from tests.kit.readme import settings_rows, yaml_block

MIGRATION_RULES = [f"share:migration_{a}" for a in ("start", "complete", "cancel", "get_progress")]


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
