-- live-room protocol: live sessions before the cut are train; after it, test requests. A request is
-- the user's first entry into a room within a split, kept in test only when the room was on air at
-- that time (otherwise no on-air retrieval could return it). Flags:
--   is_cold_start_user: the user has no live session before the cut;
--   is_tail_item: the room's author is outside the top live_room_head_fraction of live authors
--     (authors with a room started before the cut: authors who first go live later are not known
--     at the cut) ranked by sessions before the cut (ties by author_id). Rooms starting during the
--     test period have no history of their own, hence the author.
-- Slice flags of test requests (null on train rows), where only transferred content can help:
--   is_not_linked: the user had no valid play of the room's author's short videos before the request
--     (the creator is the same author_id in both domains);
--   is_new_streamer: the room's author has no live session before the cut;
--   is_off_topic: the room's topic (its author's category_l1, int_authors_categorised) is none of
--     the user's most played categories (category_l1 of valid plays) before the request; false when
--     either is unknown (no topic for the author, no valid play before the request).

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

valid_plays as (
    select user_id, author_id, category_l1, enter_timestamp
    from {{ ref('int_photo_plays_scored') }}
    where is_valid_play
),

first_author_plays as (
    select user_id, author_id, min(enter_timestamp) as first_play_timestamp
    from valid_plays
    group by user_id, author_id
),

pre_cut_streamers as (
    select distinct author_id from split_sessions where split = 'train'
),

author_topics as (
    select author_id, category_l1 as topic from {{ ref('int_authors_categorised') }}
),

test_requests as (
    select requests.user_id, requests.live_id, requests.request_timestamp
    from requests
    where requests.split = 'test'
),

-- each valid play with its user's running count of plays of that category (peers at the same
-- instant counted together), so one as-of lookup gives a category's count before a request
category_running_counts as (
    select
        user_id,
        category_l1 as topic,
        enter_timestamp,
        count(*) over (
            partition by user_id, category_l1 order by enter_timestamp
            range between unbounded preceding and current row
        ) as plays_so_far
    from valid_plays
    where category_l1 is not null
),

user_categories as (
    select distinct user_id, topic from category_running_counts
),

category_counts_at_request as (
    select test_requests.user_id, test_requests.live_id, user_categories.topic, counts.plays_so_far
    from test_requests
    inner join user_categories on test_requests.user_id = user_categories.user_id
    asof join category_running_counts as counts
        on user_categories.user_id = counts.user_id
        and user_categories.topic = counts.topic
        and test_requests.request_timestamp > counts.enter_timestamp
),

dominant_categories as (
    select user_id, live_id, topic
    from (
        select
            *,
            max(plays_so_far) over (partition by user_id, live_id) as top_plays
        from category_counts_at_request
    )
    where plays_so_far = top_plays
),

requests_with_history as (
    select distinct user_id, live_id from category_counts_at_request
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
    head_authors.author_id is null as is_tail_item,
    case when requests.split = 'test' then
        first_author_plays.first_play_timestamp is null
        or first_author_plays.first_play_timestamp >= requests.request_timestamp
    end as is_not_linked,
    case when requests.split = 'test' then pre_cut_streamers.author_id is null end as is_new_streamer,
    case when requests.split = 'test' then
        author_topics.topic is not null
        and requests_with_history.user_id is not null
        and dominant_categories.topic is null
    end as is_off_topic
from requests
inner join rooms on requests.live_id = rooms.live_id
left join users_with_history on requests.user_id = users_with_history.user_id
left join head_authors on rooms.author_id = head_authors.author_id
left join first_author_plays
    on requests.user_id = first_author_plays.user_id and rooms.author_id = first_author_plays.author_id
left join pre_cut_streamers on rooms.author_id = pre_cut_streamers.author_id
left join author_topics on rooms.author_id = author_topics.author_id
left join requests_with_history
    on requests.split = 'test'
    and requests.user_id = requests_with_history.user_id and requests.live_id = requests_with_history.live_id
left join dominant_categories
    on requests.split = 'test'
    and requests.user_id = dominant_categories.user_id and requests.live_id = dominant_categories.live_id
    and author_topics.topic = dominant_categories.topic
where requests.split = 'train'
    or (
        rooms.start_timestamp <= requests.request_timestamp
        and (rooms.end_timestamp is null or requests.request_timestamp < rooms.end_timestamp)
    )
