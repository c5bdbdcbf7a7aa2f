{#- Every request of the given split is for a room on air at request time in `schedule`
    (start <= request < coalesce(end, +infinity)), so on-air retrieval can return it. -#}
{% test on_air_at_request(model, column_name, schedule, request_column, split_column, split) %}
select requests.*
from {{ model }} as requests
left join {{ schedule }} as schedule
    on requests.{{ column_name }} = schedule.{{ column_name }}
    and schedule.start_timestamp <= requests.{{ request_column }}
    and (schedule.end_timestamp is null or requests.{{ request_column }} < schedule.end_timestamp)
where requests.{{ split_column }} = '{{ split }}'
  and schedule.{{ column_name }} is null
{% endtest %}
