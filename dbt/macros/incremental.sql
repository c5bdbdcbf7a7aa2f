{% macro incremental_start_date(lookback_days=0) -%}
  {#- For an incremental model partitioned by event_date: the first day to (re)process.
      It is the newest day already in the model (re-done, so rows that arrived late for that day
      are picked up) minus `lookback_days`. A literal date, so the lake's day partitions are pruned.
      Restated older days need `dbt build --full-refresh`. -#}
  {%- set newest = none -%}
  {%- if execute -%}
    {%- set newest = run_query("select max(event_date) from " ~ this).columns[0].values()[0] -%}
  {%- endif -%}
  {%- if newest is none -%}
    date '1970-01-01'
  {%- else -%}
    (date '{{ newest }}' - {{ lookback_days }})
  {%- endif -%}
{%- endmacro %}
