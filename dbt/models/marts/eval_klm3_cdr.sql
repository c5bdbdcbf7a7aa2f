-- klm3-cdr splits: the k-core positives of each (user, domain) in time order (ties by item), split
-- 80/10/10 the way RecBole's ratio split counts: n_valid = floor(0.1 n), n_test = floor(0.1 n),
-- the rest is train, earliest first.

with core as (
    select * from {{ ref('int_klm3_cdr_core') }}
),

ordered as (
    select
        *,
        row_number() over (partition by user_id, domain order by event_timestamp, item_id) as position,
        count(*) over (partition by user_id, domain) as n
    from core
),

sized as (
    select
        *,
        cast(floor(n * {{ var('klm3_valid_ratio') }}) as bigint) as n_valid,
        cast(floor(n * {{ var('klm3_test_ratio') }}) as bigint) as n_test
    from ordered
)

select
    user_id,
    domain,
    item_id,
    event_timestamp,
    case
        when position <= n - n_valid - n_test then 'train'
        when position <= n - n_test then 'valid'
        else 'test'
    end as split
from sized
