with source as (
    select * from {{ source('lake', 'photo_play') }}
),

renamed as (
    select
        cast(user_id as bigint) as user_id,
        cast(photo_id as bigint) as photo_id,
        cast(author_id as bigint) as author_id,
        enter_timestamp,
        leave_timestamp,
        epoch_ms(leave_timestamp) - epoch_ms(enter_timestamp) as play_ms,
        enter_play_type,
        is_complete_play = 1 as is_complete_play,
        like_status_type > 0 as is_liked,
        is_follow_before_play = 1 as is_follow_before_play,
        is_follow_after_play = 1 as is_follow_after_play,
        -- a follow that the play produced
        is_follow_after_play = 1 and is_follow_before_play = 0 as is_new_follow,
        cast(event_date as date) as event_date
    from source
)

select * from renamed
