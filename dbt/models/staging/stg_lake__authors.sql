with source as (
    select * from {{ source('lake', 'author_profile') }}
),

renamed as (
    select
        cast(author_id as bigint) as author_id,
        is_photo_author = 1 as is_photo_author,
        is_live_author = 1 as is_live_author,
        gender,
        age_segment,
        fans_user_num as fans_bucket
    from source
)

select * from renamed
