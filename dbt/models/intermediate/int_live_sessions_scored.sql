{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_date',
        on_schema_change='fail',
    )
}}

-- One row per live session (a user inside a room), with its strength. Every entered session is a
-- positive live interaction. Incremental by day like int_photo_plays_scored.

with sessions as (
    select * from {{ ref('stg_lake__live_sessions') }}
    {% if is_incremental() %}
    where event_date >= {{ incremental_start_date() }}
    {% endif %}
)

select
    user_id,
    live_id,
    author_id,
    session_start_timestamp,
    session_end_timestamp,
    watch_ms,
    like_count,
    comment_count,
    gift_count,
    follow_count,
    {{ live_session_strength('watch_ms', 'gift_count', 'like_count + comment_count', 'follow_count') }} as strength,
    event_date
from sessions
