"""dbt -> Feast: marts tagged `feast` in dbt's manifest become feature views, without hand-written Python.

The dbt YAML of a mart is the only place its Feast facts are written:

    models:
      - name: user_features_daily
        config:
          tags: ['feast']
          meta:
            feast: {entity: user, join_key: user_id, timestamp_field: event_timestamp,
                    created_timestamp_column: created_timestamp, ttl: 30d}
        columns:
          - name: user_id
            data_type: bigint
          - name: sv_plays_1d
            data_type: bigint
            description: short-video plays on day D

Every documented column with a `data_type` becomes a Feast field (the join key becomes the entity
column; the two timestamp columns are the source's timestamps, not features). A column can stay
out with `meta: {feast: false}`. Optional keys of meta.feast: `online` (default true),
`regenerated` (default false: read frames with filter_by_created_timestamp), `description`, `push`
(default false: true adds a Feast push source `<mart>_push` over the mart's parquet, so rows that
arrive between builds, e.g. a room going on air, are written to the online store through it),
`online_fields` (a list of columns: the mart's view becomes offline only and a second view
`<mart>_online` over the same table carries just these columns online, so a wide mart's text and
vectors are not written to the online store for readers that never ask for them; a feature
service asks for it as `<mart>_online.with_name('<mart>')`, keeping the `<mart>__<column>` names).

`render` turns the manifest into the text of feature_repo/views/generated.py; `sync` writes it
(or, with check=True, only says whether the committed file is stale).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from rgcd.errors import RgcdError

GENERATED_NAME = "generated.py"

# DuckDB / dbt data types -> the Feast type expression written into generated.py.
_SCALARS: dict[str, str] = {
    "bigint": "Int64", "int8": "Int64", "long": "Int64", "int64": "Int64",
    "integer": "Int32", "int": "Int32", "int4": "Int32", "int32": "Int32", "signed": "Int32",
    "smallint": "Int32", "int2": "Int32", "tinyint": "Int32", "int1": "Int32",
    "double": "Float64", "float8": "Float64", "double precision": "Float64", "float64": "Float64",
    "float": "Float32", "float4": "Float32", "real": "Float32", "float32": "Float32",
    "varchar": "String", "text": "String", "string": "String", "char": "String", "bpchar": "String",
    "boolean": "Bool", "bool": "Bool", "logical": "Bool",
    "timestamp": "UnixTimestamp", "timestamptz": "UnixTimestamp", "datetime": "UnixTimestamp",
    "timestamp with time zone": "UnixTimestamp", "timestamp_ms": "UnixTimestamp",
    "timestamp_us": "UnixTimestamp", "timestamp_ns": "UnixTimestamp", "timestamp_s": "UnixTimestamp",
    "blob": "Bytes", "bytea": "Bytes", "binary": "Bytes", "varbinary": "Bytes",
}
# Feast arrays hold these element types only (no arrays of timestamps in the online store).
_ARRAY_ELEMENTS = {"Int32", "Int64", "Float32", "Float64", "String", "Bool", "Bytes", "UnixTimestamp"}

_TTL = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_TTL_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class DbtFeastError(RgcdError, ValueError):
    """The manifest does not say enough (or says something wrong) to define a feature view."""

    exit_code = 2


@dataclass(frozen=True)
class FeastField:
    """One column of a mart as a Feast field."""

    name: str
    dtype: str  # a Feast type expression, e.g. "Array(Float32)"
    description: str


@dataclass(frozen=True)
class MartView:
    """One tagged mart, as a feature view definition."""

    name: str
    unique_id: str
    entity: str
    join_key: str
    timestamp_field: str
    created_timestamp_column: str | None
    ttl: timedelta
    online: bool
    regenerated: bool
    description: str
    fields: tuple[FeastField, ...]
    push: bool = False
    online_fields: tuple[str, ...] = ()  # non-empty: a second, online view with only these columns
    mart: str = ""  # the mart the view reads, when it is not the view's name (`<mart>_online`)


def feast_type(data_type: str) -> str:
    """The Feast type expression for a dbt/DuckDB column data type; raises DbtFeastError if none fits."""
    text = " ".join(data_type.strip().lower().split())
    array = re.fullmatch(r"(.+?)\s*\[\d*\]", text) or re.fullmatch(r"(?:list|array)\s*<\s*(.+?)\s*>", text)
    if array:
        element = feast_type(array.group(1))
        if element not in _ARRAY_ELEMENTS:
            raise DbtFeastError(f"no Feast array of {data_type!r}")
        return f"Array({element})"
    base = re.sub(r"\(.*\)$", "", text).strip()  # varchar(64) -> varchar
    if base in _SCALARS:
        return _SCALARS[base]
    raise DbtFeastError(
        f"data type {data_type!r} has no Feast type; cast it in the model to one of bigint, integer, "
        "double, float, varchar, boolean, timestamptz, blob or a list of those")


def parse_ttl(text: str | int) -> timedelta:
    """'30d' / '12h' / '90m' / '45s' / '2w' (or a number of seconds) -> timedelta; '0d' = never expires."""
    if isinstance(text, int):
        return timedelta(seconds=text)
    match = _TTL.match(str(text))
    if not match:
        raise DbtFeastError(f"ttl {text!r} is not like '30d', '12h', '90m', '45s' or '2w'")
    return timedelta(**{_TTL_UNITS[match.group(2)]: int(match.group(1))})


def _ttl_code(ttl: timedelta) -> str:
    seconds = int(ttl.total_seconds())
    if seconds == 0:
        return "timedelta(0)"  # Feast's convention: no TTL, a value never expires
    for unit, size in (("weeks", 604_800), ("days", 86_400), ("hours", 3_600), ("minutes", 60)):
        if seconds % size == 0:
            return f"timedelta({unit}={seconds // size})"
    return f"timedelta(seconds={seconds})"


def _feast_meta(node: dict) -> dict | None:
    config = node.get("config") or {}
    meta = (config.get("meta") or {}).get("feast")
    if meta is None:
        meta = (node.get("meta") or {}).get("feast")
    return meta


def tagged_marts(manifest: dict, entities: dict[str, str]) -> list[MartView]:
    """Every model of the manifest tagged `feast`, as MartView (sorted by name).

    `entities` maps each Feast entity name to its join key (from feature_repo/entities.py).
    """
    views: list[MartView] = []
    for unique_id, node in (manifest.get("nodes") or {}).items():
        if node.get("resource_type") != "model":
            continue
        tags = set(node.get("tags") or []) | set((node.get("config") or {}).get("tags") or [])
        if "feast" not in tags:
            continue
        views.append(_mart_view(unique_id, node, entities))
    names = [v.name for v in views]
    if len(names) != len(set(names)):
        raise DbtFeastError(f"two tagged models share a name: {sorted(names)}")
    return sorted(views, key=lambda v: v.name)


def _mart_view(unique_id: str, node: dict, entities: dict[str, str]) -> MartView:
    name = node["name"]
    where = f"mart {name} ({node.get('original_file_path', unique_id)})"
    meta = _feast_meta(node)
    if not isinstance(meta, dict):
        raise DbtFeastError(f"{where} is tagged feast but has no meta.feast mapping; add config.meta.feast "
                            "{entity, join_key, timestamp_field, created_timestamp_column, ttl}")
    for key in ("entity", "timestamp_field", "ttl"):
        if key not in meta:
            raise DbtFeastError(f"{where}: meta.feast has no {key!r} (required)")
    entity = meta["entity"]
    if entity not in entities:
        raise DbtFeastError(f"{where}: entity {entity!r} is not one of {sorted(entities)} "
                            "(feature_repo/entities.py)")
    join_key = meta.get("join_key", entities[entity])
    if join_key != entities[entity]:
        raise DbtFeastError(f"{where}: join_key {join_key!r} differs from entity {entity!r}'s join key "
                            f"{entities[entity]!r}; rename the column in the mart")
    timestamp_field = meta["timestamp_field"]
    created = meta.get("created_timestamp_column")
    columns = node.get("columns") or {}
    if join_key not in columns:
        raise DbtFeastError(f"{where}: join key column {join_key!r} is not documented in its YAML")
    fields: list[FeastField] = []
    for column in columns.values():
        col_name = column["name"]
        if col_name in (timestamp_field, created) or (column.get("meta") or {}).get("feast") is False:
            continue
        data_type = column.get("data_type")
        if not data_type:
            raise DbtFeastError(f"{where}: column {col_name!r} has no data_type; declare it in the YAML "
                                "(or leave it out of Feast with meta: {feast: false})")
        try:
            dtype = feast_type(data_type)
        except DbtFeastError as err:
            raise DbtFeastError(f"{where}: column {col_name!r}: {err}") from None
        fields.append(FeastField(col_name, dtype, (column.get("description") or "").strip()))
    if len(fields) < 2:
        raise DbtFeastError(f"{where}: no feature columns besides the join key")
    online_fields = tuple(meta.get("online_fields") or ())
    unknown = sorted(set(online_fields) - {f.name for f in fields} | ({join_key} & set(online_fields)))
    if unknown:
        raise DbtFeastError(f"{where}: meta.feast.online_fields names {unknown}, which are not feature "
                            "columns of the mart (the join key is always online)")
    if online_fields and meta.get("online") is True:
        raise DbtFeastError(f"{where}: meta.feast has online: true and online_fields; online_fields "
                            "makes the whole view offline and only those columns online, drop one")
    return MartView(
        name=name, unique_id=unique_id, entity=entity, join_key=join_key,
        timestamp_field=timestamp_field, created_timestamp_column=created,
        ttl=parse_ttl(meta["ttl"]), online=bool(meta.get("online", True)) and not online_fields,
        regenerated=bool(meta.get("regenerated", False)),
        description=(meta.get("description") or node.get("description") or "").strip(),
        fields=tuple(fields), push=bool(meta.get("push", False)), online_fields=online_fields,
    )


def online_subset(view: MartView) -> MartView:
    """The `<mart>_online` view of a mart with online_fields: the join key and those columns, online."""
    keep = {view.join_key, *view.online_fields}
    return replace(view, name=f"{view.name}_online", mart=view.name, online=True, online_fields=(),
                   fields=tuple(f for f in view.fields if f.name in keep),
                   description=f"Online columns of {view.name} (meta.feast.online_fields); the view "
                               f"{view.name} has every column, offline. {view.description}")


def render(views: list[MartView]) -> str:
    """The text of feature_repo/views/generated.py for these views (deterministic)."""
    views = [w for v in views for w in ([v, online_subset(v)] if v.online_fields else [v])]
    types = sorted({t for v in views for f in v.fields for t in re.findall(r"[A-Z][A-Za-z0-9]+", f.dtype)})
    entities = sorted({v.entity for v in views})
    lines = [
        "# GENERATED by `rgcd features sync` from dbt's manifest (dbt/target/manifest.json).",
        "# Do not edit: change the mart's YAML under dbt/models (tags: [feast], meta.feast, columns'",
        "# data_type), run dbt, then `rgcd features sync`. CI runs `rgcd features sync --check`.",
        "# ruff: noqa: E501",
        '"""Feature views over the dbt marts tagged `feast` (generated)."""',
        "",
        "from datetime import timedelta",
        "",
    ]
    if entities:
        lines.append(f"from entities import {', '.join(entities)}")
    push = ", PushSource" if any(v.push and not v.online_fields for v in views) else ""
    lines.append(f"from feast import FeatureView, Field{push}")
    if types:
        lines.append(f"from feast.types import {', '.join(types)}")
    if views:
        lines.append("from sources import mart_source")
    shared = {v.name for v in views if v.online_fields}  # marts read by two views: one source object
    for v in views:
        created = repr(v.created_timestamp_column) if v.created_timestamp_column else "None"
        mart = v.mart or v.name
        batch = (f"mart_source({mart!r}, timestamp_field={v.timestamp_field!r},\n"
                 f"                       created_timestamp_column={created})")
        if mart in shared:
            if v.name == mart:  # Feast refuses two source objects of one name; the views share this one
                lines += ["", f"{mart}_source = {' '.join(batch.split())}"]
            batch = f"{mart}_source"
        if v.push and not v.online_fields:  # with online_fields the push source is the online view's
            batch = f"PushSource(name={v.name + '_push'!r}, batch_source={' '.join(batch.split())})"
        lines += [
            "",
            f"{v.name} = FeatureView(",
            f"    name={v.name!r},",
            f"    entities=[{v.entity}],",
            f"    ttl={_ttl_code(v.ttl)},",
            "    schema=[",
        ]
        for f in v.fields:
            desc = f", description={f.description!r}" if f.description else ""
            lines.append(f"        Field(name={f.name!r}, dtype={f.dtype}{desc}),")
        lines += [
            "    ],",
            f"    source={batch},",
            f"    online={v.online},",
            f"    description={v.description!r},",
            f"    tags={{'origin': 'dbt', 'dbt_unique_id': {v.unique_id!r}, "
            f"'regenerated': {str(v.regenerated).lower()!r}}},",
            ")",
        ]
    lines += ["", f"GENERATED_VIEWS = [{', '.join(v.name for v in views)}]", ""]
    return "\n".join(lines)


def read_manifest(path: Path) -> dict:
    """dbt's manifest.json, with an error that says how to produce it."""
    if not path.exists():
        raise DbtFeastError(f"{path} does not exist; run `rgcd features sync` without --manifest (it "
                            "runs `dbt parse`), or `rgcd build`")
    return json.loads(path.read_text())


@dataclass(frozen=True)
class SyncResult:
    """The generated file, its views, and whether it differed from the manifest."""

    path: Path
    views: tuple[str, ...]
    stale: bool  # the file on disk differed from the manifest (before writing, when writing)


def sync(manifest_path: Path, entities: dict[str, str], out: Path, *, check: bool = False) -> SyncResult:
    """Regenerate `out` from the manifest; with check=True only compare and leave the file alone."""
    views = tagged_marts(read_manifest(manifest_path), entities)
    text = render(views)
    stale = not out.exists() or out.read_text() != text
    if stale and not check:
        out.write_text(text)
    names = [n for v in views for n in ([v.name, online_subset(v).name] if v.online_fields else [v.name])]
    return SyncResult(out, tuple(names), stale)
