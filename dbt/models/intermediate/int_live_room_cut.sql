-- live-room protocol: the time cut, at a UTC midnight. The live log spans n_days UTC days from its
-- first session's day; the last live_room_test_fraction of those days is the test period:
-- cut = first_day + round(n_days x (1 - fraction)) days, kept at least one day from either end.
-- (14 days, fraction 0.2: the cut is the start of day 11, as in the demo world.) One row.

with bounds as (
    select
        min(session_start_timestamp) as log_start,
        max(session_start_timestamp) as log_end,
        min(event_date) as first_day,
        max(event_date) - min(event_date) + 1 as n_days
    from {{ ref('int_live_sessions_scored') }}
)

select
    log_start,
    log_end,
    n_days,
    timezone('UTC', cast(
        first_day + cast(greatest(1, least(n_days - 1,
            round(n_days * (1 - {{ var('live_room_test_fraction') }})))) as integer)
        as timestamp)) as cut_timestamp
from bounds
