with source as (
    select * from {{ source('lake', 'live_interaction') }}
),

renamed as (
    select
        cast(user_id as bigint) as user_id,
        cast(author_id as bigint) as author_id,
        cast(live_id as bigint) as live_id,
        live_play_start_timestamp as session_start_timestamp,
        live_play_end_timestamp as session_end_timestamp,
        p_date,
        live_source_category,
        enter_live_action,
        is_auto_play = 1 as is_auto_play,
        is_follow_enter = 1 as is_follow_enter,
        is_follow_leave = 1 as is_follow_leave,
        cast(play_duration as bigint) as watch_ms,
        like_cnt as like_count,
        comment_cnt as comment_count,
        send_gift_cnt as gift_count,
        send_gift_num as gift_items,
        follow_author_cnt as follow_count,
        cancel_follow_author_cnt as unfollow_count,
        share_cnt as share_count,
        report_live_cnt as report_count,
        cast(event_date as date) as event_date
    from source
)

select * from renamed
