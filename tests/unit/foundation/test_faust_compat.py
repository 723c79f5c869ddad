"""Flow control that keeps live events when Faust resumes a flow that is already running."""

from __future__ import annotations

from types import SimpleNamespace

from mode.utils.queues import FlowControlEvent, FlowControlQueue

from pipeline.faust_compat import ResumeKeepsLiveEvents, keep_live_events_on_resume


def stream_queue(flow: FlowControlEvent) -> FlowControlQueue[str]:
    """A queue like the one behind each Faust stream (cleared on resume)."""
    return FlowControlQueue(flow_control=flow, clear_on_resume=True)


def test_mode_resume_drops_queued_events_even_when_already_flowing():
    """The upstream behaviour the workaround exists for; if this fails, mode changed and the patch may go."""
    flow = FlowControlEvent()
    queue = stream_queue(flow)
    flow.resume()
    queue.put_nowait("billing[0]@9")
    flow.resume()  # what Recovery.on_recovery_completed does while flow is active
    assert queue.qsize() == 0


def test_resume_while_flowing_keeps_queued_events():
    """Would fail if the resume at the end of table recovery dropped fetched records (kill -9 test lost mails)."""
    app = SimpleNamespace(flow_control=FlowControlEvent())
    queue = stream_queue(app.flow_control)
    keep_live_events_on_resume(app)
    app.flow_control.resume()
    queue.put_nowait("notifications[3]@3")
    app.flow_control.resume()
    assert queue.qsize() == 1
    assert app.flow_control.is_active()


def test_resume_after_suspend_still_clears_stale_events():
    """After a revocation the queued events belong to the old assignment and are fetched again."""
    app = SimpleNamespace(flow_control=FlowControlEvent())
    queue = stream_queue(app.flow_control)
    keep_live_events_on_resume(app)
    app.flow_control.resume()
    queue.put_nowait("old generation")
    app.flow_control.suspend()
    assert not app.flow_control.is_active()
    app.flow_control.resume()
    assert queue.qsize() == 0
    assert app.flow_control.is_active()


def test_install_is_idempotent_and_keeps_the_same_object():
    """Queues registered before the install stay managed: the object is kept, only its class changes."""
    flow = FlowControlEvent()
    app = SimpleNamespace(flow_control=flow)
    queue = stream_queue(flow)
    keep_live_events_on_resume(app)
    keep_live_events_on_resume(app)
    assert app.flow_control is flow
    assert type(flow) is ResumeKeepsLiveEvents
    flow.resume()
    queue.put_nowait("x")
    flow.suspend()
    flow.resume()
    assert queue.qsize() == 0
