with source as (
    select * from {{ source('lake', 'photo_meta') }}
),

renamed as (
    select
        cast(photo_id as bigint) as photo_id,
        cast(author_id as bigint) as author_id,
        cast(duration as bigint) as duration_ms,
        display_type,
        coalesce(cover_title, '') as cover_title,
        coalesce(video_texts, '') as video_texts,
        {{ optional_lake_text('photo_meta', 'cover_path') }} as cover_path
    from source
)

select * from renamed
