-- What the pair rule dropped, per UTC day: plays and sessions past the per-user-day caps (they
-- pair with nothing), candidate co-engagements under the strength floor, and those past the cap of
-- co-engagements per user-day. `rgcd build` sums it into its line.

with plays as (
    select
        event_date,
        sum(valid_plays) as valid_plays,
        sum(greatest(valid_plays - {{ var('pair_plays_per_user_day') | int }}, 0)) as plays_over_cap
    from {{ ref('int_user_photo_activity_daily') }}
    group by event_date
),

sessions as (
    select
        event_date,
        sum(sessions) as sessions,
        sum(greatest(sessions - {{ var('pair_sessions_per_user_day') | int }}, 0)) as sessions_over_cap
    from {{ ref('int_user_live_activity_daily') }}
    group by event_date
),

candidates as (
    select
        event_date,
        count(*) as candidate_pairs,
        count(*) filter (where {{ pair_mean_strength() }} < {{ var('pair_min_strength') }}) as pairs_under_floor
    from {{ ref('int_behaviour_pair_candidates_daily') }}
    group by event_date
),

kept as (
    select
        event_date,
        count(*) as kept_pairs,
        count(distinct user_id) as users
    from {{ ref('int_behaviour_pair_events_daily') }}
    group by event_date
),

days as (
    select event_date from plays
    union
    select event_date from sessions
    union
    select event_date from candidates
)

select
    days.event_date,
    cast(coalesce(plays.valid_plays, 0) as bigint) as valid_plays,
    cast(coalesce(plays.plays_over_cap, 0) as bigint) as plays_over_cap,
    cast(coalesce(sessions.sessions, 0) as bigint) as sessions,
    cast(coalesce(sessions.sessions_over_cap, 0) as bigint) as sessions_over_cap,
    cast(coalesce(candidates.candidate_pairs, 0) as bigint) as candidate_pairs,
    cast(coalesce(candidates.pairs_under_floor, 0) as bigint) as pairs_under_floor,
    cast(coalesce(candidates.candidate_pairs, 0) - coalesce(candidates.pairs_under_floor, 0)
         - coalesce(kept.kept_pairs, 0) as bigint) as pairs_over_cap,
    cast(coalesce(kept.kept_pairs, 0) as bigint) as kept_pairs
from days
left join plays on days.event_date = plays.event_date
left join sessions on days.event_date = sessions.event_date
left join candidates on days.event_date = candidates.event_date
left join kept on days.event_date = kept.event_date
