with source as (
    select * from {{ source('lake', 'user_id_set') }}
),

renamed as (
    select
        cast(user_id as bigint) as user_id
    from source
)

select * from renamed
