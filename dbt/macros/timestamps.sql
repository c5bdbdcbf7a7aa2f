{% macro end_of_day_utc(day) -%}
  {#- The snapshot time of a day D: D+1 00:00 UTC, as TIMESTAMPTZ. -#}
  timezone('UTC', cast({{ day }} + 1 as timestamp))
{%- endmacro %}

{% macro build_timestamp() -%}
  {#- created_timestamp of restatable rows: when this dbt invocation started (UTC). -#}
  cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}+00:00' as timestamptz)
{%- endmacro %}
