-- Every short-video play and live session as one interaction with a domain-prefixed item_id.

select
    user_id,
    'photo:' || photo_id as item_id,
    'photo' as domain,
    author_id,
    enter_timestamp as event_timestamp,
    is_valid_play as is_positive,
    strength
from {{ ref('int_photo_plays_scored') }}

union all

select
    user_id,
    'live:' || live_id as item_id,
    'live' as domain,
    author_id,
    session_start_timestamp as event_timestamp,
    true as is_positive,
    strength
from {{ ref('int_live_sessions_scored') }}
