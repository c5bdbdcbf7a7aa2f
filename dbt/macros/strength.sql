{#- Behaviour strength of one engagement, in [0, 1]. The weights are the platform's choice, written
    once here: progress or watch time carries half, the explicit signals (complete play / gift,
    like / comment, a new follow) the rest. -#}

{% macro photo_play_strength(progress, is_complete_play, is_liked, is_new_follow) -%}
  least(1.0,
        0.5 * {{ progress }}
        + 0.2 * cast({{ is_complete_play }} as double)
        + 0.15 * cast({{ is_liked }} as double)
        + 0.15 * cast({{ is_new_follow }} as double))
{%- endmacro %}

{% macro live_session_strength(watch_ms, gift_count, interact_count, follow_count) -%}
  {#- Watch time saturates at 5 minutes. -#}
  least(1.0,
        0.5 * least(cast({{ watch_ms }} as double) / 300000.0, 1.0)
        + 0.2 * cast({{ gift_count }} > 0 as double)
        + 0.15 * cast({{ interact_count }} > 0 as double)
        + 0.15 * cast({{ follow_count }} > 0 as double))
{%- endmacro %}

{% macro pair_mean_strength(strength_sum='strength_sum', co_count='co_count') -%}
  {#- A candidate pair's mean co-engagement strength, as the pair rule ranks and floors it. Rounded
      to 1e-9 so that the order in which float sums were added (an incremental build against a
      full refresh) cannot change which candidates are kept. -#}
  round({{ strength_sum }} / {{ co_count }}, 9)
{%- endmacro %}
