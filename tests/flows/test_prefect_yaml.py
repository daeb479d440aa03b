"""prefect.yaml is the single source of truth: validate it strictly, then apply it for real."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.deploy import PREFECT_YAML, load_project
from storage.errors import InvalidInputError


def test_every_key_is_known_and_every_entrypoint_imports() -> None:
    from prefect.flows import load_flow_from_entrypoint

    project = load_project()
    names = {d.name for d in project.deployments}
    assert names == {
        "migrate-share",
        "evacuate-pool",
        "rebalance-pools",
        "rollback-share",
        "expire-retained",
    }
    for spec in project.deployments:
        flow: Any = load_flow_from_entrypoint(spec.entrypoint)
        params = inspect.signature(flow.fn).parameters
        assert set(spec.parameters) <= set(params), f"{spec.name}: unknown parameters"
        required = {n for n, p in params.items() if p.default is inspect.Parameter.empty}
        if spec.name == "migrate-share":
            assert required == {"migration_id"}
        elif spec.name == "evacuate-pool":
            assert required == {"pool"}
        elif spec.name == "rollback-share":
            assert required == {"share_id"}
        else:
            assert required <= set(spec.parameters)
        assert flow.name == spec.name, "deployments are addressed as <flow>/<deployment>"


def test_rebalance_schedule_ships_inactive() -> None:
    rebalance = next(d for d in load_project().deployments if d.name == "rebalance-pools")
    assert [(s.cron, s.active) for s in rebalance.schedules] == [("0 3 * * 0", False)]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["deployments"][0].update(schedule={"cron": "* * * * *"}),
        lambda d: d["deployments"][0]["work_pool"].update(typo_queue="x"),
        lambda d: d.update(deployment=[]),
    ],
    ids=["unknown-deployment-key", "unknown-work-pool-key", "unknown-top-level-key"],
)
def test_unknown_keys_are_rejected_by_name(tmp_path: Path, mutate: Any) -> None:
    data = yaml.safe_load(PREFECT_YAML.read_text())
    mutate(data)
    bad = tmp_path / "prefect.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(InvalidInputError, match="Extra inputs are not permitted"):
        load_project(bad)


def test_apply_creates_pool_and_deployments_and_keeps_operator_schedule(
    deployed: dict[str, Any],
) -> None:
    from prefect import get_client

    from flows.deploy import apply_deployments

    assert set(deployed) == {
        "migrate-share/migrate-share",
        "evacuate-pool/evacuate-pool",
        "rebalance-pools/rebalance-pools",
        "rollback-share/rollback-share",
        "expire-retained/expire-retained",
    }
    with get_client(sync_client=True) as client:
        assert client.read_work_pool("sharemig").type == "process"
        rebalance = client.read_deployment_by_name("rebalance-pools/rebalance-pools")
        assert [s.active for s in rebalance.schedules] == [False]
        migrate = client.read_deployment_by_name("migrate-share/migrate-share")
        assert migrate.entrypoint == "flows.migrate_share.migrate_share"
        assert migrate.parameter_openapi_schema["required"] == ["migration_id"]
        # An operator enables the schedule; applying the file again must not undo that.
        schedule = rebalance.schedules[0]
        client.update_deployment_schedule(rebalance.id, schedule.id, active=True)
    again = apply_deployments(work_pool="sharemig")
    assert again == deployed
    with get_client(sync_client=True) as client:
        rebalance = client.read_deployment_by_name("rebalance-pools/rebalance-pools")
        assert [s.active for s in rebalance.schedules] == [True]
        client.update_deployment_schedule(rebalance.id, rebalance.schedules[0].id, active=False)
