"""Who may do what: oslo.policy with Manila's rule names and defaults (manila/policies/).

Only the rules of the API the shim serves are registered. An operator's `policy.yaml`
overrides any of them; a file that does not parse, names a rule sharemig does not know or holds
a check string oslo.policy cannot read is refused with its line, so `up` never starts on a
policy that silently means something else.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml
from oslo_config import cfg
from oslo_policy import _parser
from oslo_policy import policy as oslo_policy

from storage.errors import InvalidInputError
from storage.tokens import ADMIN_ROLE, MEMBER_ROLE, TokenInfo

READER_ROLE = "reader"
# Keystone's bootstrap makes admin imply member and member imply reader, and puts the implied
# roles into every token; tokens-file tokens get the same expansion so one rule set fits both.
IMPLIED_ROLES = {ADMIN_ROLE: (MEMBER_ROLE, READER_ROLE), MEMBER_ROLE: (READER_ROLE,)}

ADMIN = "rule:context_is_admin"
ADMIN_OR_PROJECT_MEMBER = f"({ADMIN}) or (rule:project-member)"
ADMIN_OR_PROJECT_READER = f"({ADMIN}) or (rule:project-reader)"

_BASE = {
    "project-admin": "role:admin and project_id:%(project_id)s",
    "project-member": "role:member and project_id:%(project_id)s",
    "project-reader": "role:reader and project_id:%(project_id)s",
    "owner-user": "user_id:%(user_id)s and project_id:%(project_id)s",
    "admin_or_service_api": "role:admin or role:service",
    "context_is_admin": "role:admin",
    "context_is_host_admin": "role:admin and project_id:%(project_id)s",
    "admin_or_owner": "is_admin:True or project_id:%(project_id)s",
    "admin_or_owner_user": "is_admin:True or project_id:%(project_id)s and user_id:%(user_id)s",
    "default": "rule:admin_or_owner",
    "admin_api": "is_admin:True",
}
_SHARE = {
    "create": ADMIN_OR_PROJECT_MEMBER,
    "create_public_share": ADMIN,
    "get": ADMIN_OR_PROJECT_READER,
    "get_all": ADMIN_OR_PROJECT_READER,
    "update": ADMIN_OR_PROJECT_MEMBER,
    "set_public_share": ADMIN,
    "delete": ADMIN_OR_PROJECT_MEMBER,
    "force_delete": ADMIN,
    "access_get": ADMIN_OR_PROJECT_READER,
    "access_get_all": ADMIN_OR_PROJECT_READER,
    "extend": ADMIN_OR_PROJECT_MEMBER,
    "force_extend": ADMIN,
    "shrink": ADMIN_OR_PROJECT_MEMBER,
    "migration_start": ADMIN,
    "migration_complete": ADMIN,
    "migration_cancel": ADMIN,
    "migration_get_progress": ADMIN,
    "reset_task_state": ADMIN,
    "reset_status": ADMIN,
    "allow_access": ADMIN_OR_PROJECT_MEMBER,
    "deny_access": ADMIN_OR_PROJECT_MEMBER,
    "update_share_metadata": ADMIN_OR_PROJECT_MEMBER,
    "delete_share_metadata": ADMIN_OR_PROJECT_MEMBER,
    "get_share_metadata": ADMIN_OR_PROJECT_READER,
    "list_all_projects": ADMIN,
    "create_snapshot": ADMIN_OR_PROJECT_MEMBER,
    "delete_snapshot": ADMIN_OR_PROJECT_MEMBER,
    "snapshot_update": ADMIN_OR_PROJECT_MEMBER,
}
_SHARE_TYPE = {
    "create": ADMIN,
    "update": ADMIN,
    "show": ADMIN_OR_PROJECT_READER,
    "index": ADMIN_OR_PROJECT_READER,
    "default": ADMIN_OR_PROJECT_READER,
    "delete": ADMIN,
    "list_project_access": ADMIN,
    "add_project_access": ADMIN,
    "remove_project_access": ADMIN,
}
_EXTRA_SPEC = dict.fromkeys(("create", "show", "index", "update", "delete"), ADMIN)
_SNAPSHOT = {
    "get_snapshot": ADMIN_OR_PROJECT_READER,
    "get_all_snapshots": ADMIN_OR_PROJECT_READER,
    "list_all_projects": ADMIN,
    "force_delete": ADMIN,
    "reset_status": ADMIN,
    "update_metadata": ADMIN_OR_PROJECT_MEMBER,
    "delete_metadata": ADMIN_OR_PROJECT_MEMBER,
    "get_metadata": ADMIN_OR_PROJECT_READER,
}
_NETWORK = {
    **dict.fromkeys(("create", "show", "index", "detail", "update", "delete"), "rule:default"),
    "get_all_share_networks": ADMIN,
}
_POOLS = dict.fromkeys(("index", "detail"), ADMIN)

DEFAULTS: dict[str, str] = {
    **_BASE,
    **{f"share:{k}": v for k, v in _SHARE.items()},
    **{f"share_type:{k}": v for k, v in _SHARE_TYPE.items()},
    **{f"share_types_extra_spec:{k}": v for k, v in _EXTRA_SPEC.items()},
    **{f"share_snapshot:{k}": v for k, v in _SNAPSHOT.items()},
    **{f"share_network:{k}": v for k, v in _NETWORK.items()},
    **{f"scheduler_stats:pools:{k}": v for k, v in _POOLS.items()},
}


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _parses(check: str) -> bool:
    """oslo.policy reads a bad check string as "deny all" and logs a traceback; ask quietly."""
    log = logging.getLogger("oslo_policy._parser")
    was, log.disabled = log.disabled, True
    try:
        return str(_parser.parse_rule(check)) != "!"
    finally:
        log.disabled = was


def check_policy_file(path: Path) -> dict[str, str]:
    """The rules `path` sets, or InvalidInputError naming the file and line of the first fault."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"cannot read policy file {path}: {exc.strerror}") from None
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise InvalidInputError(f"policy file {path}{where}: not YAML ({problem})") from None
    if root is None:
        return {}
    if not isinstance(root, yaml.MappingNode):
        raise InvalidInputError(
            f'policy file {path} line {_line(root)}: expected rule: "check" pairs, '
            f'e.g. "share:migration_start": "role:admin"'
        )
    rules: dict[str, str] = {}
    for key, value in root.value:
        name = key.value if isinstance(key, yaml.ScalarNode) else None
        if name not in DEFAULTS:
            raise InvalidInputError(
                f"policy file {path} line {_line(key)}: unknown rule {name!r}; sharemig serves "
                "Manila's rules share:*, share_type:*, share_types_extra_spec:*, "
                "share_snapshot:*, share_network:*, scheduler_stats:pools:* and the base rules; "
                "`sharemig policy defaults` prints them all"
            )
        if not isinstance(value, yaml.ScalarNode):
            raise InvalidInputError(
                f"policy file {path} line {_line(value)}: rule {name!r} needs a check string"
            )
        check = value.value
        if check.strip() not in ("", "!", "@") and not _parses(check):
            raise InvalidInputError(
                f"policy file {path} line {_line(value)}: rule {name!r} has a check string "
                f"oslo.policy cannot parse: {check!r}"
            )
        rules[name] = check
    return rules


class Policy:
    """One oslo.policy enforcer over Manila's defaults and an optional `policy.yaml`."""

    def __init__(self, policy_file: Path | None = None) -> None:
        if policy_file is not None:
            check_policy_file(policy_file)
        conf = cfg.ConfigOpts()
        conf([], project="sharemig", default_config_files=[], default_config_dirs=[])
        self._enforcer = oslo_policy.Enforcer(
            conf,
            policy_file=str(policy_file) if policy_file else None,
            fallback_to_json_file=False,
        )
        conf.set_override("policy_dirs", [], group="oslo_policy")
        self._enforcer.register_defaults(
            [oslo_policy.RuleDefault(name, check) for name, check in DEFAULTS.items()]
        )
        self._enforcer.load_rules()

    @staticmethod
    def _creds(caller: TokenInfo) -> dict[str, object]:
        roles = set(caller.roles)
        for role in caller.roles:
            roles.update(IMPLIED_ROLES.get(role, ()))
        return {
            "roles": sorted(roles),
            "project_id": caller.project_id,
            "user_id": caller.user_id,
        }

    def allows(self, rule: str, caller: TokenInfo, target: dict[str, object] | None = None) -> bool:
        creds = self._creds(caller)
        creds["is_admin"] = bool(self._enforcer.authorize("context_is_admin", {}, creds))
        full_target: dict[str, object] = {
            "project_id": caller.project_id,
            "user_id": caller.user_id,
            **(target or {}),
        }
        return bool(self._enforcer.authorize(rule, full_target, creds))

    def is_admin(self, caller: TokenInfo) -> bool:
        return bool(self._enforcer.authorize("context_is_admin", {}, self._creds(caller)))
