-- Behaviour pairs: (short video, live room) and (short video, live author) engaged by the same
-- users within pair_window_hours. Built from the daily co-engagements; the author pairs fold the
-- rooms of one author together.

with events as (
    select * from {{ ref('int_behaviour_pair_events_daily') }}
),

room_pairs as (
    select
        'photo_live_room' as pair_type,
        'photo:' || photo_id as photo_item_id,
        'live:' || live_id as target_id,
        photo_id,
        live_id,
        author_id,
        sum(co_count) as co_count,
        count(distinct user_id) as distinct_users,
        sum(strength_sum) / sum(co_count) as strength,
        min(first_seen) as first_seen,
        max(last_seen) as last_seen
    from events
    group by photo_id, live_id, author_id
),

author_pairs as (
    select
        'photo_live_author' as pair_type,
        'photo:' || photo_id as photo_item_id,
        'author:' || author_id as target_id,
        photo_id,
        cast(null as bigint) as live_id,
        author_id,
        sum(co_count) as co_count,
        count(distinct user_id) as distinct_users,
        sum(strength_sum) / sum(co_count) as strength,
        min(first_seen) as first_seen,
        max(last_seen) as last_seen
    from events
    group by photo_id, author_id
),

pairs as (
    select * from room_pairs
    union all
    select * from author_pairs
)

select
    photo_item_id || '|' || target_id as pair_id,
    pair_type,
    photo_item_id,
    target_id,
    photo_id,
    live_id,
    author_id,
    cast(co_count as bigint) as co_count,
    cast(distinct_users as bigint) as distinct_users,
    cast(strength as double) as strength,
    first_seen,
    last_seen,
    last_seen as event_timestamp,
    {{ build_timestamp() }} as created_timestamp
from pairs
