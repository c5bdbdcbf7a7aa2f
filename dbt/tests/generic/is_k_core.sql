{#- Within each `partition_column` value, every user and every item has at least k rows.
    Fails when the k-core filtering stopped before its fixed point. -#}
{% test is_k_core(model, k, partition_column, user_column, item_column) %}
with users as (
    select {{ partition_column }}, 'user' as node, {{ user_column }} as id, count(*) as n
    from {{ model }} group by 1, 3
),
items as (
    select {{ partition_column }}, 'item' as node, {{ item_column }} as id, count(*) as n
    from {{ model }} group by 1, 3
)
select * from users where n < {{ k }}
union all
select * from items where n < {{ k }}
{% endtest %}
