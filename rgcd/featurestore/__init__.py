"""Everything that drives Feast, in one place.

- `store`: the repo config built from the workspace, `apply`, point-in-time frames, materialize,
  online reads and the `features` stage of `rgcd run`.
- `dbt_sync`: dbt marts tagged `feast` -> `feature_repo/views/generated.py` (no hand-written Python).

The definitions themselves (entities, sources, views, services) live in `feature_repo/`, which
Feast imports on apply; nothing here runs at import time.
"""
