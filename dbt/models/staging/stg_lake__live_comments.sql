-- live_comment is optional: without it the model is empty, with the same columns.
{% if lake_has('live_comment') %}
with source as (
    select * from {{ source('lake', 'live_comment') }}
),

renamed as (
    select
        cast(live_stream_id as bigint) as live_id,
        cast(user_id as bigint) as user_id,
        cast(author_id as bigint) as author_id,
        coalesce(content, '') as content,
        comment_ts as comment_timestamp,
        cast(event_date as date) as event_date
    from source
)

select * from renamed
{% else %}
select
    cast(null as bigint) as live_id, cast(null as bigint) as user_id, cast(null as bigint) as author_id,
    cast(null as varchar) as content, cast(null as timestamptz) as comment_timestamp,
    cast(null as date) as event_date
where false
{% endif %}
