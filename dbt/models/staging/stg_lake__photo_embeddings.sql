-- photo_emb_128 is optional: without it the model is empty, with the same columns.
{% if lake_has('photo_emb_128') %}
with source as (
    select * from {{ source('lake', 'photo_emb_128') }}
),

renamed as (
    select
        cast(photo_id as bigint) as photo_id,
        cast(feature as float[]) as mm_embedding
    from source
)

select * from renamed
{% else %}
select cast(null as bigint) as photo_id, cast(null as float[]) as mm_embedding
where false
{% endif %}
