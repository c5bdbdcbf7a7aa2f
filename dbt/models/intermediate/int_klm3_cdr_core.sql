-- klm3-cdr k-core per domain: repeatedly keep users and items with >= klm3_core positives in that
-- domain, for klm3_core_passes passes (each pass can drop rows that made another node reach k).
-- The data test `is_k_core` on eval_klm3_cdr fails if the passes did not reach the fixed point.

{%- set k = var('klm3_core') | int %}
{%- set passes = var('klm3_core_passes') | int %}

with pass_0 as materialized (
    select user_id, domain, item_id, event_timestamp from {{ ref('int_klm3_cdr_positives') }}
),
{% for i in range(1, passes + 1) %}
pass_{{ i }} as materialized (
    select p.*
    from pass_{{ i - 1 }} as p
    semi join (
        select domain, user_id from pass_{{ i - 1 }} group by domain, user_id having count(*) >= {{ k }}
    ) as users using (domain, user_id)
    semi join (
        select domain, item_id from pass_{{ i - 1 }} group by domain, item_id having count(*) >= {{ k }}
    ) as items using (domain, item_id)
){{ ',' if not loop.last }}
{% endfor %}

select * from pass_{{ passes }}
