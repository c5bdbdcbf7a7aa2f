{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_date',
        on_schema_change='fail',
    )
}}

-- Live activity per user and UTC day: the additive pieces of user_features_daily.

with sessions as (
    select * from {{ ref('int_live_sessions_scored') }}
    {% if is_incremental() %}
    where event_date >= {{ incremental_start_date() }}
    {% endif %}
)

select
    user_id,
    event_date,
    count(*) as sessions,
    sum(watch_ms) as watch_ms,
    sum(gift_count) as gifts,
    sum(comment_count) as comments,
    sum(follow_count) as follows
from sessions
group by user_id, event_date
