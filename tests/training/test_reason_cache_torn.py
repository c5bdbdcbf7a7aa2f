import logging

from rgcd.training.reasoning.cache import AnswerCache, CachedAnswer


def test_a_torn_teacher_cache_is_set_aside_with_one_line(tmp_path, caplog):
    path = tmp_path / "cache.sqlite"
    cache = AnswerCache(path)
    cache.put_many([(("h", "v1", "t"), CachedAnswer("accepted", "{}", "{}", None, 1))])
    assert cache.get_many([("h", "v1", "t")])
    cache.close()
    path.write_bytes(b"SQLite format 3\x00" + b"\x17" * 200)
    with caplog.at_level(logging.WARNING, logger="rgcd.training.reasoning.cache"):
        fresh = AnswerCache(path)
    assert fresh.get_many([("h", "v1", "t")]) == {}
    assert len(caplog.records) == 1 and "unreadable" in caplog.records[0].getMessage()
    assert (tmp_path / "cache.sqlite.unreadable").exists()
