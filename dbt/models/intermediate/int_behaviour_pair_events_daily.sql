{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_date',
        on_schema_change='fail',
    )
}}

-- Co-engagements: a valid short-video play and a live session of the same user at most
-- pair_window_hours apart (either order), aggregated per user, photo, room and UTC day.
-- The day of a co-engagement is the day of its LATER event, so a new day of logs only creates
-- rows on or after that day: the run re-reads the window before it but rewrites only new days.

{%- set window_hours = var('pair_window_hours') | int %}
{%- set lookback_days = ((window_hours + 23) // 24) %}

with plays as (
    select user_id, photo_id, enter_timestamp, strength
    from {{ ref('int_photo_plays_scored') }}
    where is_valid_play
    {% if is_incremental() %}
    and event_date >= {{ incremental_start_date(lookback_days) }}
    {% endif %}
),

sessions as (
    select user_id, live_id, author_id, session_start_timestamp, strength
    from {{ ref('int_live_sessions_scored') }}
    {% if is_incremental() %}
    where event_date >= {{ incremental_start_date(lookback_days) }}
    {% endif %}
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
