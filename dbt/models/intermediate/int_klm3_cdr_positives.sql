-- klm3-cdr positives, one per (user, domain, item), at the user's first positive engagement:
-- photo = a valid play (progress >= valid_play_progress), item = photo_id;
-- live = an entered session, item = the live author_id (the benchmark's target).

with photo_positives as (
    select user_id, 'photo' as domain, photo_id as item_id, enter_timestamp as event_timestamp
    from {{ ref('int_photo_plays_scored') }}
    where is_valid_play
),

live_positives as (
    select user_id, 'live' as domain, author_id as item_id, session_start_timestamp as event_timestamp
    from {{ ref('int_live_sessions_scored') }}
),

positives as (
    select * from photo_positives
    union all
    select * from live_positives
)

select user_id, domain, item_id, min(event_timestamp) as event_timestamp
from positives
group by user_id, domain, item_id
