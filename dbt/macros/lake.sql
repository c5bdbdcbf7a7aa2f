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
  {%- set found = run_query("select count(*) from glob(" ~ sql_literal(lake_glob(stem)) ~ ")") -%}
  {{ return(found.columns[0].values()[0] > 0) }}
{%- endmacro %}

{% macro lake_has_column(stem, column) -%}
  {#- True when the lake's `stem` files carry `column` (an optional column of the contract, such as
      cover_path: ingest keeps it only where the raw file has it). Answers true at parse time. -#}
  {%- if not execute -%}
    {{ return(true) }}
  {%- endif -%}
  {%- set found = run_query(
      "select count(*) from (describe select * from read_parquet(" ~ sql_literal(lake_glob(stem))
      ~ ", hive_partitioning = true, union_by_name = true)) where column_name = " ~ sql_literal(column)) -%}
  {{ return(found.columns[0].values()[0] > 0) }}
{%- endmacro %}

{% macro optional_lake_text(stem, column) -%}
  {#- `column` of a lake table as trimmed text, NULL where blank, and NULL for every row where the
      lake does not carry the column at all. -#}
  {%- if lake_has_column(stem, column) -%}
    nullif(trim(cast({{ column }} as varchar)), '')
  {%- else -%}
    cast(null as varchar)
  {%- endif -%}
{%- endmacro %}
