"""The pool inventory (`pools.yaml`): validated with pydantic, errors name line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.drivers.base import PoolRef
from storage.drivers.registry import DRIVERS, driver_class, get_driver
from storage.errors import InvalidInputError, InventoryError
from storage.hosts import parse_host
from storage.models import Pool


class PoolSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    driver: str
    url: str = Field(min_length=1)
    capacity_gb: int = Field(gt=0)
    availability_zone: str = "nova"
    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict)
    max_concurrent_migrations: int | None = Field(default=None, gt=0, strict=True)
    """Migrations moving data from or to this pool at once; later starts queue."""
    bandwidth_limit_bytes: int | None = Field(default=None, gt=0, strict=True)
    """Bytes/s shared by every migration reading from or writing to this pool."""

    @field_validator("name")
    @classmethod
    def _name_is_host_string(cls, v: str) -> str:
        try:
            parse_host(v, require_pool=True)
        except InvalidInputError as exc:
            raise ValueError(str(exc)) from None
        return v

    @field_validator("driver")
    @classmethod
    def _known_driver(cls, v: str) -> str:
        if v not in DRIVERS:
            raise ValueError(f"unknown driver {v!r}; known: {', '.join(sorted(DRIVERS))}")
        return v


class Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pools: list[PoolSpec]


def _node_lines(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out[(*path, key.value)] = key.start_mark.line + 1
            _node_lines(value, (*path, key.value), out)
            out.setdefault((*path, key.value), value.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _node_lines(item, (*path, i), out)


def parse_inventory(text: str, source: str = "pools.yaml") -> Inventory:
    """Parse and validate inventory YAML; `InventoryError` says `source:line: field: problem`."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise InventoryError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    lines: dict[tuple[Any, ...], int] = {}
    if root is not None:
        _node_lines(root, (), lines)
    try:
        inv = Inventory.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), 1)
            field = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc)
            problems.append(f"{source}:{line}: {field.replace('.[', '[')}: {err['msg']}")
        raise InventoryError("\n".join(problems)) from None
    names = [p.name for p in inv.pools]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InventoryError(f"{source}: pool names must be unique; repeated: {', '.join(dupes)}")
    refused = _refused_pools(inv, source, lines)
    if refused:
        raise InventoryError("\n".join(refused))
    return inv


def _refused_pools(inv: Inventory, source: str, lines: dict[tuple[Any, ...], int]) -> list[str]:
    """Pools whose driver says they cannot serve (a driver may declare a `check_pool`)."""
    problems = []
    for i, spec in enumerate(inv.pools):
        check = getattr(driver_class(spec.driver), "check_pool", None)
        if check is None:
            continue
        why = check(PoolRef(spec.name, spec.driver, spec.url, dict(spec.options)))
        if why:
            line = lines.get(("pools", i, "url"), lines.get(("pools", i), 1))
            problems.append(f"{source}:{line}: pools[{i}].url: {spec.driver} pool refused: {why}")
    return problems


def load_inventory(path: Path) -> Inventory:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError(f"cannot read pool inventory {path}: {exc.strerror}") from None
    return parse_inventory(text, str(path))


def _capacity_gb(spec: PoolSpec) -> int:
    """The inventory's capacity, capped at the pool filesystem's size where the driver reports
    it (`pool_space`, btrfs): a pool cannot promise more than its filesystem holds."""
    if not hasattr(driver_class(spec.driver), "pool_space"):
        return spec.capacity_gb  # no driver object made: an fsspec one may connect somewhere
    driver = get_driver(PoolRef(spec.name, spec.driver, spec.url, dict(spec.options)))
    size, _free = driver.pool_space()  # type: ignore[attr-defined]
    return max(1, min(spec.capacity_gb, int(size) >> 30))


def sync_inventory(session: Session, inventory: Inventory) -> list[str]:
    """Upsert the inventory's pools; pools no longer listed are disabled (shares may live there)."""
    existing = {p.name: p for p in session.scalars(select(Pool))}
    for spec in inventory.pools:
        host = parse_host(spec.name, require_pool=True)
        pool = existing.pop(spec.name, None) or Pool(name=spec.name)
        pool.host, pool.backend, pool.pool = host.host, host.backend, host.pool or ""
        pool.driver, pool.url, pool.capacity_gb = spec.driver, spec.url, _capacity_gb(spec)
        pool.availability_zone, pool.enabled, pool.options = (
            spec.availability_zone,
            spec.enabled,
            dict(spec.options),
        )
        pool.max_concurrent_migrations = spec.max_concurrent_migrations
        pool.bandwidth_limit_bytes = spec.bandwidth_limit_bytes
        session.add(pool)
    for gone in existing.values():
        gone.enabled = False
    session.flush()
    return [p.name for p in inventory.pools]
