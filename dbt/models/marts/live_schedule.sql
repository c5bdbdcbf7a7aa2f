-- On-air intervals of the live rooms, for retrieval filters: a room is on air at t when
-- start_timestamp <= t < coalesce(end_timestamp, +infinity).

select
    'live:' || live_id as item_id,
    live_id,
    author_id,
    start_timestamp,
    end_timestamp,
    start_timestamp as event_timestamp,
    {{ build_timestamp() }} as created_timestamp
from {{ ref('stg_lake__live_rooms') }}
