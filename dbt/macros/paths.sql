{% macro lake_path() -%}
  {#- The lake folder: var lake_path, else <RGCD_WORKSPACE>/lake. -#}
  {{- var('lake_path') or (env_var('RGCD_WORKSPACE') ~ '/lake') -}}
{%- endmacro %}

{% macro marts_path() -%}
  {#- The marts folder: var marts_path, else <RGCD_WORKSPACE>/marts. -#}
  {{- var('marts_path') or (env_var('RGCD_WORKSPACE') ~ '/marts') -}}
{%- endmacro %}

{% macro external_location(relation, config) -%}
  {#- Overrides dbt-duckdb's default (external_root/<name>.parquet): marts go to <marts_path>/<name>.parquet. -#}
  {{- marts_path() }}/{{ relation.identifier }}.{{ config.get('format', 'parquet') -}}
{%- endmacro %}

{% macro sql_literal(text) -%}
  {#- `text` as a SQL string literal: single quotes around it, each quote inside doubled. Every
      path rgcd pastes into SQL goes through here: a workspace may be called "it's ws". -#}
  {{- "'" ~ (text | string | replace("'", "''")) ~ "'" -}}
{%- endmacro %}
