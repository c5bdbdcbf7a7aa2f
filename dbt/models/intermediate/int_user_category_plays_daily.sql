{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_date',
        on_schema_change='fail',
    )
}}

-- Valid short-video plays per user, UTC day and level-1 category (plays of untagged videos are
-- left out here; they still count in the valid-play totals that shares are taken of).

with plays as (
    select * from {{ ref('int_photo_plays_scored') }}
    where is_valid_play and category_l1 is not null
    {% if is_incremental() %}
    and event_date >= {{ incremental_start_date() }}
    {% endif %}
)

select
    user_id,
    event_date,
    category_l1,
    count(*) as valid_plays
from plays
group by user_id, event_date, category_l1
