-- Daily snapshots of each user's cross-domain features. The snapshot of day D is taken at
-- event_timestamp = D+1 00:00 UTC and uses events of days <= D only (strictly before it), over
-- windows of 1, 7 and 30 days ending on D. Every user of user_id_set has one row per day of the log
-- (a dense spine), so a point-in-time lookup always finds the latest snapshot.

with users as (
    select user_id from {{ ref('stg_lake__users') }}
),

photo_daily as (
    select * from {{ ref('int_user_photo_activity_daily') }}
),

live_daily as (
    select * from {{ ref('int_user_live_activity_daily') }}
),

log_days as (
    select min(event_date) as first_day, max(event_date) as last_day
    from (
        select event_date from photo_daily
        union all
        select event_date from live_daily
    )
),

calendar as (
    select cast(unnest(generate_series(first_day, last_day, interval 1 day)) as date) as event_date
    from log_days
),

spine as (
    select users.user_id, calendar.event_date
    from users
    cross join calendar
),

daily as (
    select
        spine.user_id,
        spine.event_date,
        coalesce(photo_daily.plays, 0) as plays,
        coalesce(photo_daily.valid_plays, 0) as valid_plays,
        coalesce(photo_daily.complete_plays, 0) as complete_plays,
        coalesce(photo_daily.likes, 0) as likes,
        coalesce(photo_daily.follows, 0) as photo_follows,
        coalesce(live_daily.sessions, 0) as sessions,
        coalesce(live_daily.watch_ms, 0) as watch_ms,
        coalesce(live_daily.gifts, 0) as gifts,
        coalesce(live_daily.comments, 0) as comments,
        coalesce(live_daily.follows, 0) as live_follows
    from spine
    left join photo_daily
        on spine.user_id = photo_daily.user_id and spine.event_date = photo_daily.event_date
    left join live_daily
        on spine.user_id = live_daily.user_id and spine.event_date = live_daily.event_date
),

-- the spine is dense, so "the last n rows" are "the last n days"
windowed as (
    select
        user_id,
        event_date,
        {%- for col, name in [('plays', 'sv_plays'), ('valid_plays', 'sv_valid_plays'),
                             ('complete_plays', 'sv_complete_plays'), ('likes', 'sv_likes'),
                             ('photo_follows', 'sv_follows')] %}
        cast({{ col }} as bigint) as {{ name }}_1d,
        cast(sum({{ col }}) over w7 as bigint) as {{ name }}_7d,
        cast(sum({{ col }}) over w30 as bigint) as {{ name }}_30d,
        {%- endfor %}
        {%- for col, name in [('sessions', 'live_sessions'), ('watch_ms', 'live_watch_ms'),
                             ('gifts', 'live_gifts'), ('comments', 'live_comments'),
                             ('live_follows', 'live_follows')] %}
        cast(sum({{ col }}) over w7 as bigint) as {{ name }}_7d,
        cast(sum({{ col }}) over w30 as bigint) as {{ name }}_30d,
        {%- endfor %}
        sum(sessions) over w_all = 0 as is_live_cold_start
    from daily
    window
        w7 as (partition by user_id order by event_date rows between 6 preceding and current row),
        w30 as (partition by user_id order by event_date rows between 29 preceding and current row),
        w_all as (partition by user_id order by event_date rows between unbounded preceding and current row)
),

category_30d as (
    select
        spine.user_id,
        spine.event_date,
        categories.category_l1,
        sum(categories.valid_plays) as valid_plays
    from spine
    inner join {{ ref('int_user_category_plays_daily') }} as categories
        on spine.user_id = categories.user_id
        and categories.event_date between spine.event_date - 29 and spine.event_date
    group by spine.user_id, spine.event_date, categories.category_l1
),

category_ranked as (
    select
        *,
        row_number() over (
            partition by user_id, event_date order by valid_plays desc, category_l1
        ) as category_rank
    from category_30d
),

top_categories as (
    select
        user_id,
        event_date,
        {%- for r in [1, 2, 3] %}
        max(category_l1) filter (where category_rank = {{ r }}) as top_category_{{ r }},
        coalesce(max(valid_plays) filter (where category_rank = {{ r }}), 0) as top_category_{{ r }}_plays{{ ',' if not loop.last }}
        {%- endfor %}
    from category_ranked
    where category_rank <= 3
    group by user_id, event_date
)

select
    windowed.user_id,
    {{ end_of_day_utc('windowed.event_date') }} as event_timestamp,
    {{ build_timestamp() }} as created_timestamp,
    {%- for name in ['sv_plays', 'sv_valid_plays', 'sv_complete_plays', 'sv_likes', 'sv_follows'] %}
    windowed.{{ name }}_1d,
    windowed.{{ name }}_7d,
    windowed.{{ name }}_30d,
    {%- endfor %}
    {%- for r in [1, 2, 3] %}
    top_categories.top_category_{{ r }},
    -- share of all 30-day valid plays (untagged videos included in the denominator); 0 when absent
    case
        when windowed.sv_valid_plays_30d > 0
            then coalesce(top_categories.top_category_{{ r }}_plays, 0) / windowed.sv_valid_plays_30d
        else 0.0
    end as top_category_{{ r }}_share,
    {%- endfor %}
    {%- for name in ['live_sessions', 'live_watch_ms', 'live_gifts', 'live_comments', 'live_follows'] %}
    windowed.{{ name }}_7d,
    windowed.{{ name }}_30d,
    {%- endfor %}
    windowed.is_live_cold_start
from windowed
left join top_categories
    on windowed.user_id = top_categories.user_id and windowed.event_date = top_categories.event_date
