{#- The model has at least one row (an empty mart means the lake or a join is wrong). -#}
{% test not_empty(model) %}
select 'no rows' as problem
where not exists (select 1 from {{ model }})
{% endtest %}
