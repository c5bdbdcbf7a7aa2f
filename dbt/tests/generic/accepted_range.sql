{#- Non-null values outside [min_value, max_value] fail (either bound may be omitted). -#}
{% test accepted_range(model, column_name, min_value=None, max_value=None) %}
select *
from {{ model }}
where {{ column_name }} is not null
  and (
    false
    {% if min_value is not none %} or {{ column_name }} < {{ min_value }} {% endif %}
    {% if max_value is not none %} or {{ column_name }} > {{ max_value }} {% endif %}
  )
{% endtest %}
