-- Short videos and live rooms in one shape, keyed by a domain-prefixed item_id.

with photos as (
    select * from {{ ref('stg_lake__photos') }}
),

photo_tags as (
    select * from {{ ref('stg_lake__photo_tags') }}
),

photo_embeddings as (
    select * from {{ ref('stg_lake__photo_embeddings') }}
),

first_plays as (
    select photo_id, min(enter_timestamp) as first_play_timestamp
    from {{ ref('int_photo_plays_scored') }}
    group by photo_id
),

log_start as (
    select min(enter_timestamp) as log_start_timestamp from {{ ref('int_photo_plays_scored') }}
),

live_rooms as (
    select * from {{ ref('stg_lake__live_rooms') }}
),

live_embeddings as (
    select * from {{ ref('stg_lake__live_embeddings') }}
),

author_categories as (
    select * from {{ ref('int_authors_categorised') }}
),

photo_items as (
    select
        'photo:' || photos.photo_id as item_id,
        'photo' as domain,
        photos.photo_id as source_id,
        photos.author_id,
        photos.cover_title as title,
        photos.video_texts as body_text,
        photo_tags.category_l1,
        photo_tags.category_l2,
        photo_tags.category_l3,
        photo_tags.category_l4,
        photos.duration_ms,
        cast(null as timestamptz) as start_timestamp,
        cast(null as timestamptz) as end_timestamp,
        photo_embeddings.mm_embedding,
        photos.cover_path,
        -- a video is known from its first play; never-played videos from the start of the log
        coalesce(first_plays.first_play_timestamp, log_start.log_start_timestamp) as event_timestamp
    from photos
    cross join log_start
    left join photo_tags on photos.photo_id = photo_tags.photo_id
    left join photo_embeddings on photos.photo_id = photo_embeddings.photo_id
    left join first_plays on photos.photo_id = first_plays.photo_id
),

live_items as (
    select
        'live:' || live_rooms.live_id as item_id,
        'live' as domain,
        live_rooms.live_id as source_id,
        live_rooms.author_id,
        live_rooms.live_name as title,
        '' as body_text,
        author_categories.category_l1,
        author_categories.category_l2,
        author_categories.category_l3,
        author_categories.category_l4,
        live_rooms.live_duration_ms as duration_ms,
        live_rooms.start_timestamp,
        live_rooms.end_timestamp,
        live_embeddings.mm_embedding,
        live_rooms.cover_path,
        live_rooms.start_timestamp as event_timestamp
    from live_rooms
    left join author_categories on live_rooms.author_id = author_categories.author_id
    left join live_embeddings on live_rooms.live_id = live_embeddings.live_id
)

select *, {{ build_timestamp() }} as created_timestamp from photo_items
union all
select *, {{ build_timestamp() }} as created_timestamp from live_items
