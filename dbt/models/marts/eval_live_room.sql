-- live-room protocol: live sessions before the cut are train; after it, test requests. A request is
-- the user's first entry into a room within a split, kept in test only when the room was on air at
-- that time (otherwise no on-air retrieval could return it). Flags:
--   is_cold_start_user: the user has no live session before the cut;
--   is_tail_item: the room's author is outside the top live_room_head_fraction of live authors
--     (authors with a room started before the cut: authors who first go live later are not known
--     at the cut) ranked by sessions before the cut (ties by author_id). Rooms starting during the
--     test period have no history of their own, hence the author.

with sessions as (
    select user_id, live_id, author_id, session_start_timestamp
    from {{ ref('int_live_sessions_scored') }}
),

cut as (
    select cut_timestamp from {{ ref('int_live_room_cut') }}
),

rooms as (
    select live_id, author_id, start_timestamp, end_timestamp from {{ ref('stg_lake__live_rooms') }}
),

split_sessions as (
    select
        sessions.*,
        case when sessions.session_start_timestamp < cut.cut_timestamp then 'train' else 'test' end as split
    from sessions
    cross join cut
),

requests as (
    select user_id, live_id, split, min(session_start_timestamp) as request_timestamp
    from split_sessions
    group by user_id, live_id, split
),

users_with_history as (
    select distinct user_id from split_sessions where split = 'train'
),

author_popularity as (
    select
        live_authors.author_id,
        count(split_sessions.user_id) as pre_cut_sessions
    from (
        select distinct rooms.author_id
        from rooms
        cross join cut
        where rooms.start_timestamp < cut.cut_timestamp
    ) as live_authors
    left join split_sessions
        on live_authors.author_id = split_sessions.author_id and split_sessions.split = 'train'
    group by live_authors.author_id
),

head_authors as (
    select author_id
    from (
        select
            author_id,
            pre_cut_sessions,
            row_number() over (order by pre_cut_sessions desc, author_id) as popularity_rank,
            count(*) over () as n_authors
        from author_popularity
    )
    where pre_cut_sessions > 0
        and popularity_rank <= ceil(n_authors * {{ var('live_room_head_fraction') }})
)

select
    requests.user_id,
    requests.live_id,
    'live:' || requests.live_id as item_id,
    requests.request_timestamp,
    requests.split,
    users_with_history.user_id is null as is_cold_start_user,
    head_authors.author_id is null as is_tail_item
from requests
inner join rooms on requests.live_id = rooms.live_id
left join users_with_history on requests.user_id = users_with_history.user_id
left join head_authors on rooms.author_id = head_authors.author_id
where requests.split = 'train'
    or (
        rooms.start_timestamp <= requests.request_timestamp
        and (rooms.end_timestamp is null or requests.request_timestamp < rooms.end_timestamp)
    )
