-- live_emb_64 is optional: without it the model is empty, with the same columns.
{% if lake_has('live_emb_64') %}
with source as (
    select * from {{ source('lake', 'live_emb_64') }}
),

renamed as (
    select
        cast(live_id as bigint) as live_id,
        cast(embedding as float[]) as mm_embedding
    from source
)

select * from renamed
{% else %}
select cast(null as bigint) as live_id, cast(null as float[]) as mm_embedding
where false
{% endif %}
