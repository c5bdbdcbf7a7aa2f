{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_date',
        on_schema_change='fail',
    )
}}

-- One row per short-video play, with its progress, validity (>= valid_play_progress) and strength.
-- Incremental by day: a run re-does the newest loaded day and adds the days after it.

with plays as (
    select * from {{ ref('stg_lake__photo_plays') }}
    {% if is_incremental() %}
    where event_date >= {{ incremental_start_date() }}
    {% endif %}
),

photos as (
    select photo_id, duration_ms from {{ ref('stg_lake__photos') }}
),

tags as (
    select photo_id, category_l1 from {{ ref('stg_lake__photo_tags') }}
),

measured as (
    select
        plays.user_id,
        plays.photo_id,
        plays.author_id,
        plays.enter_timestamp,
        plays.leave_timestamp,
        plays.play_ms,
        photos.duration_ms,
        -- a zero-length video cannot be watched "partly": count it as fully played
        case
            when photos.duration_ms > 0 then least(cast(plays.play_ms as double) / photos.duration_ms, 1.0)
            else 1.0
        end as progress,
        plays.is_complete_play,
        plays.is_liked,
        plays.is_new_follow,
        tags.category_l1,
        plays.event_date
    from plays
    inner join photos on plays.photo_id = photos.photo_id
    left join tags on plays.photo_id = tags.photo_id
)

select
    user_id,
    photo_id,
    author_id,
    enter_timestamp,
    leave_timestamp,
    play_ms,
    duration_ms,
    progress,
    progress >= {{ var('valid_play_progress') }} as is_valid_play,
    is_complete_play,
    is_liked,
    is_new_follow,
    {{ photo_play_strength('progress', 'is_complete_play', 'is_liked', 'is_new_follow') }} as strength,
    category_l1,
    event_date
from measured
