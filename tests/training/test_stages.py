from rgcd.config import Settings, Workspace
from rgcd.pipeline import STAGES


def _stage(name):
    return next(s for s in STAGES if s.name == name).run


def test_stage1_stages_skip_with_a_clear_message_without_inputs(tmp_path):
    ws = Workspace(tmp_path).ensure()
    assert _stage("reason")(ws, Settings(), None).startswith("skipped:") and "rgcd build" in _stage("reason")(
        ws, Settings(), None
    )
    assert "rgcd reason" in _stage("distill")(ws, Settings(), None)


def test_reason_stage_reports_one_line_of_figures(world_ws):
    line = _stage("reason")(world_ws, Settings(), None)
    assert "metadata-baseline (not an LLM)" in line and "accepted" in line and "\n" not in line
