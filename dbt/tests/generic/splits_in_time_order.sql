{#- Within each partition, every row of an earlier split is no later than every row of a later
    split (`splits` lists the split names in time order). -#}
{% test splits_in_time_order(model, partition_by, time_column, split_column, splits) %}
with ranked as (
    select
        {{ partition_by | join(', ') }},
        case {{ split_column }}
            {% for s in splits %} when '{{ s }}' then {{ loop.index }} {% endfor %}
        end as split_rank,
        min({{ time_column }}) as first_time,
        max({{ time_column }}) as last_time
    from {{ model }}
    group by all
)
select earlier.*
from ranked as earlier
inner join ranked as later
    on {% for c in partition_by %}earlier.{{ c }} = later.{{ c }} and {% endfor %}
    earlier.split_rank < later.split_rank
where earlier.last_time > later.first_time
{% endtest %}
