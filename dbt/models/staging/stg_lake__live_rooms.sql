with source as (
    select * from {{ source('lake', 'live_room_meta') }}
),

renamed as (
    select
        cast(live_id as bigint) as live_id,
        cast(author_id as bigint) as author_id,
        coalesce(live_name, '') as live_name,
        start_timestamp,
        end_timestamp,
        cast(live_duration as bigint) as live_duration_ms,
        {{ optional_lake_text('live_room_meta', 'cover_path') }} as cover_path
    from source
)

select * from renamed
