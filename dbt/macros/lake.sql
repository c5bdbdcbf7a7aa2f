{% macro lake_glob(stem) -%}
  {#- The parquet files of one lake table (hive-partitioned event tables included). -#}
  {{- lake_path() }}/{{ stem }}/**/*.parquet
{%- endmacro %}

{% macro lake_has(stem) -%}
  {#- True when the lake holds at least one file of `stem` (optional raw files may be absent).
      Only meaningful at execution time; at parse time it answers true so lineage stays complete. -#}
  {%- if not execute -%}
    {{ return(true) }}
  {%- endif -%}
  {%- set found = run_query("select count(*) from glob('" ~ lake_glob(stem) ~ "')") -%}
  {{ return(found.columns[0].values()[0] > 0) }}
{%- endmacro %}
