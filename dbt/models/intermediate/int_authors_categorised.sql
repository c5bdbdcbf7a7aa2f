-- The category path of each author: the most frequent (level 1..4) path among their short videos,
-- ties broken by the path itself. Live rooms carry no tags; they inherit their author's path.

with tagged_photos as (
    select photos.author_id, tags.category_l1, tags.category_l2, tags.category_l3, tags.category_l4
    from {{ ref('stg_lake__photos') }} as photos
    inner join {{ ref('stg_lake__photo_tags') }} as tags on photos.photo_id = tags.photo_id
    where tags.category_l1 is not null
),

paths as (
    select author_id, category_l1, category_l2, category_l3, category_l4, count(*) as photos
    from tagged_photos
    group by all
),

ranked as (
    select
        *,
        row_number() over (
            partition by author_id
            order by photos desc, category_l1, category_l2 nulls last, category_l3 nulls last,
                category_l4 nulls last
        ) as path_rank
    from paths
)

select author_id, category_l1, category_l2, category_l3, category_l4, photos as path_photos
from ranked
where path_rank = 1
