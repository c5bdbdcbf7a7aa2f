{#- Rows where `expression` is false fail. With a column, the expression is appended to it
    (e.g. column sv_plays_7d, expression ">= sv_plays_1d"). NULL results pass, as in dbt_utils. -#}
{% test expression_is_true(model, expression, column_name=None) %}
select *
from {{ model }}
where not ({{ column_name ~ ' ' if column_name }}{{ expression }})
{% endtest %}
