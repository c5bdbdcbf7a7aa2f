{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_date',
        on_schema_change='fail',
    )
}}

-- Pair rule, steps 1-3 (docs/warehouse.md, the behaviour-pair rule). Of each user and UTC day only the
-- pair_plays_per_user_day strongest valid plays and the pair_sessions_per_user_day strongest live
-- sessions can pair, so a user-day yields at most plays cap x sessions cap x (window days) candidate
-- co-engagements however much the user watched: pairs grow with engagement, not with its square.
-- A capped play and a capped session of the same user at most pair_window_hours apart (either order)
-- co-engage; candidates are aggregated per user, short video, room and UTC day of the LATER event.
-- Incremental by day: a run re-reads ceil(window / 24 h) whole days before the newest day (so each
-- day's caps see the whole day) and rewrites only the newest day onwards.

{%- set window_hours = var('pair_window_hours') | int %}
{%- set lookback_days = ((window_hours + 23) // 24) %}

with plays as (
    select user_id, photo_id, enter_timestamp, strength
    from {{ ref('int_photo_plays_scored') }}
    where is_valid_play
    {% if is_incremental() %}
    and event_date >= {{ incremental_start_date(lookback_days) }}
    {% endif %}
    qualify row_number() over (
        partition by user_id, event_date
        order by strength desc, enter_timestamp, photo_id
    ) <= {{ var('pair_plays_per_user_day') | int }}
),

sessions as (
    select user_id, live_id, author_id, session_start_timestamp, strength
    from {{ ref('int_live_sessions_scored') }}
    {% if is_incremental() %}
    where event_date >= {{ incremental_start_date(lookback_days) }}
    {% endif %}
    qualify row_number() over (
        partition by user_id, event_date
        order by strength desc, session_start_timestamp, live_id
    ) <= {{ var('pair_sessions_per_user_day') | int }}
),

co_engagements as (
    select
        plays.user_id,
        plays.photo_id,
        sessions.live_id,
        sessions.author_id,
        least(plays.enter_timestamp, sessions.session_start_timestamp) as first_seen,
        greatest(plays.enter_timestamp, sessions.session_start_timestamp) as last_seen,
        -- the pair's behaviour strength: both sides of the co-engagement, equally weighted
        (plays.strength + sessions.strength) / 2 as strength
    from plays
    inner join sessions
        on plays.user_id = sessions.user_id
        and sessions.session_start_timestamp
            between plays.enter_timestamp - interval '{{ window_hours }} hours'
            and plays.enter_timestamp + interval '{{ window_hours }} hours'
),

dated as (
    select *, cast(last_seen as date) as event_date
    from co_engagements
    {% if is_incremental() %}
    where cast(last_seen as date) >= {{ incremental_start_date() }}
    {% endif %}
)

select
    event_date,
    user_id,
    photo_id,
    live_id,
    author_id,
    count(*) as co_count,
    sum(strength) as strength_sum,
    min(first_seen) as first_seen,
    max(last_seen) as last_seen
from dated
group by event_date, user_id, photo_id, live_id, author_id
