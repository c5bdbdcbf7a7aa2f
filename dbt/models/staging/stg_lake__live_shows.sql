-- live_show is optional: without it the model is empty, with the same columns.
{% if lake_has('live_show') %}
with source as (
    select * from {{ source('lake', 'live_show') }}
),

renamed as (
    select
        cast(live_id as bigint) as live_id,
        cast(user_id as bigint) as user_id,
        cast(author_id as bigint) as author_id,
        show_timestamp,
        cast(event_date as date) as event_date
    from source
)

select * from renamed
{% else %}
select
    cast(null as bigint) as live_id, cast(null as bigint) as user_id, cast(null as bigint) as author_id,
    cast(null as timestamptz) as show_timestamp, cast(null as date) as event_date
where false
{% endif %}
