-- live-room protocol: the time cut. The live log's time range is [first, last] session start;
-- the last live_room_test_fraction of it is the test period. One row.

with bounds as (
    select
        min(session_start_timestamp) as log_start,
        max(session_start_timestamp) as log_end
    from {{ ref('int_live_sessions_scored') }}
)

select
    log_start,
    log_end,
    to_timestamp(
        epoch(log_start) + (epoch(log_end) - epoch(log_start)) * (1 - {{ var('live_room_test_fraction') }})
    ) as cut_timestamp
from bounds
