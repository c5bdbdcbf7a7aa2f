with source as (
    select * from {{ source('lake', 'photo_tag') }}
),

renamed as (
    select
        cast(photo_id as bigint) as photo_id,
        nullif(first_level_category_name, '') as category_l1,
        nullif(second_level_category_name, '') as category_l2,
        nullif(third_level_category_name, '') as category_l3,
        nullif(fourth_level_category_name, '') as category_l4
    from source
)

select * from renamed
