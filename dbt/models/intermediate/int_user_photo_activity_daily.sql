{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_date',
        on_schema_change='fail',
    )
}}

-- Short-video activity per user and UTC day: the additive pieces of user_features_daily.

with plays as (
    select * from {{ ref('int_photo_plays_scored') }}
    {% if is_incremental() %}
    where event_date >= {{ incremental_start_date() }}
    {% endif %}
)

select
    user_id,
    event_date,
    count(*) as plays,
    count(*) filter (where is_valid_play) as valid_plays,
    count(*) filter (where is_complete_play) as complete_plays,
    count(*) filter (where is_liked) as likes,
    count(*) filter (where is_new_follow) as follows
from plays
group by user_id, event_date
