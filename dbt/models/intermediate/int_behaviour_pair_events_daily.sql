{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_date',
        on_schema_change='fail',
    )
}}

-- Pair rule, steps 4-5 (docs/warehouse.md, the behaviour-pair rule): of a user-day's candidate
-- co-engagements (int_behaviour_pair_candidates_daily), those whose mean strength is below
-- pair_min_strength are dropped, and of the rest only the pair_max_per_user_day strongest are kept
-- (ties: more co-engagements first, then ids). So behaviour_pairs holds at most that many rows per
-- user and day. Incremental by day: a day's candidates are complete, so only new days are ranked.

with candidates as (
    select * from {{ ref('int_behaviour_pair_candidates_daily') }}
    {% if is_incremental() %}
    where event_date >= {{ incremental_start_date() }}
    {% endif %}
)

select
    event_date,
    user_id,
    photo_id,
    live_id,
    author_id,
    co_count,
    strength_sum,
    first_seen,
    last_seen
from candidates
where {{ pair_mean_strength() }} >= {{ var('pair_min_strength') }}
qualify row_number() over (
    partition by user_id, event_date
    order by {{ pair_mean_strength() }} desc, co_count desc, photo_id, live_id
) <= {{ var('pair_max_per_user_day') | int }}
